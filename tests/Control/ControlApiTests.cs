using CondenseCluster.Bench;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Control;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Cluster;
using Grpc.Core;
using Grpc.Health.V1;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Control;

/// <summary>The control API against a real coordinator process running a real job on two worker processes.</summary>
[Collection(ClusterProcesses.Name)]
public class ControlApiTests(ServingCoordinator coordinator, ITestOutputHelper log) : IClassFixture<ServingCoordinator>
{
    readonly Shared.Control.Control.ControlClient client = coordinator.Client;

    [Fact]
    public async Task EveryCallWorksOnARunningJobAndTheStreamDeliversItsUpdatesInOrder()
    {
        using var watching = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        using var watch = client.Watch(new WatchRequest { FromStart = true }, ServingCoordinator.Bearer(), cancellationToken: watching.Token);
        var updates = new List<JobUpdate>();
        var reading = Task.Run(async () =>
        {
            await foreach (var update in watch.ResponseStream.ReadAllAsync(watching.Token))
            {
                lock (updates) updates.Add(update);
                if (update.Status is { State: "stopped" or "completed" or "failed" }) return;
            }
        });

        string output = Path.Combine(coordinator.Folder, "run");
        var started = await client.StartJobAsync(new StartJobRequest { Configuration = ServingCoordinator.TinyJob(epochs: 2), Output = output }, ServingCoordinator.Bearer());
        Assert.Equal(output, started.OutputFolder);
        var busy = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.StartJobAsync(new StartJobRequest { Configuration = ServingCoordinator.TinyJob() }, ServingCoordinator.Bearer()));
        Assert.Equal(StatusCode.FailedPrecondition, busy.StatusCode);
        Assert.Contains("a job is running", busy.Status.Detail);

        var running = coordinator.WaitFor(s => s.State == "running" && s.Step >= 3, "three steps");
        Assert.Equal(250, running.TotalSteps);
        // Conversion needs every layer at the last condensing stage, halfway through the job (asked first: the job
        // reaches that stage within seconds).
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await client.ExportAsync(new ExportRequest(), ServingCoordinator.Bearer()));
        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("condensing stage", refused.Status.Detail);
        var workers = (await client.ListWorkersAsync(new ListWorkersRequest(), ServingCoordinator.Bearer())).Workers;
        Assert.Equal(["worker-1", "worker-2"], workers.Select(w => w.Id));
        Assert.All(workers, w => Assert.Equal("training", w.State));
        Assert.All(workers, w => Assert.True(w.ComputeMs > 0 && w.AllReduceBytes > 0, $"{w}"));

        var checkpoint = await client.CheckpointAsync(new CheckpointRequest(), ServingCoordinator.Bearer());
        Assert.True(checkpoint.Step >= 3, $"{checkpoint}");
        var written = Checkpoint.Read(checkpoint.Path); // verifies the checksum
        Assert.Equal(checkpoint.Step, written.Header.Step);

        coordinator.WaitFor(s => s.Stage == s.FinalStage && s.FinalStage == 3, "condensing to complete");
        string exported = Path.Combine(coordinator.Folder, "deploy.ccm");
        var export = await client.ExportAsync(new ExportRequest { Path = exported }, ServingCoordinator.Bearer());
        Assert.Equal(exported, export.Path);
        using (var converted = ModelFile.Load(exported)) Assert.Equal(ModelForm.Converted, converted.Form);
        Assert.Equal(ModelCost.Total(ServingCoordinator.TinyModel, ModelForm.Converted).Parameters, export.Parameters);
        string onnx = Path.Combine(coordinator.Folder, "deploy.onnx");
        Assert.Equal(onnx, (await client.ExportAsync(new ExportRequest { Path = onnx }, ServingCoordinator.Bearer())).Path);
        using (var session = new OnnxRuntimeModel(onnx, Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_ALL, threads: 1))
        {
            var model = ServingCoordinator.TinyModel;
            Assert.Equal(model.NumClasses, session.Run(new float[model.InChannels * model.InputSize * model.InputSize], [1, model.InChannels, model.InputSize, model.InputSize]).Logits.Length);
        }

        var stopped = await client.StopJobAsync(new StopJobRequest(), ServingCoordinator.Bearer());
        Assert.Equal("stopped", stopped.State);
        Assert.Contains("control API", stopped.Reason);
        var notRunning = await Assert.ThrowsAsync<RpcException>(async () => await client.StopJobAsync(new StopJobRequest(), ServingCoordinator.Bearer()));
        Assert.Equal(StatusCode.FailedPrecondition, notRunning.StatusCode);
        var afterwards = await client.ListWorkersAsync(new ListWorkersRequest(), ServingCoordinator.Bearer());
        Assert.All(afterwards.Workers, w => Assert.Equal("finished", w.State));

        await reading;
        log.WriteLine($"{updates.Count} updates streamed, last step {updates.Last(u => u.Step is not null).Step.Step}");
        // In order: consecutive sequence numbers, steps one after another, and each condensing between the steps it separates.
        Assert.Equal(Enumerable.Range(0, updates.Count).Select(i => updates[0].Sequence + i), updates.Select(u => u.Sequence));
        var steps = updates.Where(u => u.Step is not null).Select(u => u.Step.Step).ToArray();
        Assert.Equal(Enumerable.Range(0, steps.Length).Select(i => (long)i), steps);
        Assert.True(steps.Length >= 125, $"{steps.Length} steps");
        Assert.True(steps.Length < 250, "the job was stopped before its end");
        int IndexOf(Func<JobUpdate, bool> match) => updates.FindIndex(u => match(u));
        // The stream names each event's record; its values are in the run's metrics.jsonl (complete once the job ended).
        // 250 steps, C = 4: the first condensing boundary is crossed at progress 1/6, before step 42.
        Assert.Equal(42, RunEvents.Of<MasksDecided>(output)[0].Step);
        int condensing = IndexOf(u => u.Event?.Type == nameof(MasksDecided));
        Assert.Equal("condensing", updates[condensing].Event.Kind);
        Assert.True(IndexOf(u => u.Step?.Step == 41) < condensing && condensing < IndexOf(u => u.Step?.Step == 42));
        Assert.True(IndexOf(u => u.Event?.Type == nameof(ClusterFormed)) < IndexOf(u => u.Step is not null));
        Assert.Equal([0L, 1, 2, 3], updates.Where(u => u.Layers is not null).Select(u => u.Layers.MaskVersion));
        Assert.All(updates.Last(u => u.Layers is not null).Layers.Layers, l => Assert.Equal(0.75, l.Sparsity));
        Assert.Contains(RunEvents.Of<CheckpointWritten>(output), c => c.Path == checkpoint.Path && c.Step == checkpoint.Step);
        Assert.Contains(updates, u => u.Event is { Type: nameof(CheckpointWritten), Kind: "checkpoint" });
        Assert.Equal("stopped", updates.Last().Status.State);
        var jobStopped = RunEvents.Single<JobStopped>(output);
        Assert.Equal("a control API call", jobStopped.By);
        Assert.Contains($"--resume {output} ", jobStopped.Resume);
        Assert.Contains(updates, u => u.Event?.Type == nameof(JobStopped));
        // The stop was graceful: the step in flight completed, and that boundary is the newest checkpoint.
        Assert.NotNull(jobStopped.Seconds);
        Assert.Equal(steps.Length, jobStopped.Steps);
        Assert.Equal(jobStopped.Steps, RunEvents.Of<CheckpointWritten>(output).Last().Step);
        Assert.Equal(jobStopped.Steps, CheckpointStore.Resolve(output, _ => { })!.Header.Step);
    }

    [Fact]
    public async Task CallsWithoutTheTokenOrWithAWrongOneAreRefused()
    {
        foreach (var headers in new[] { new Metadata(), ServingCoordinator.Bearer("not-the-token"), new Metadata { { "authorization", ServingCoordinator.Token } } })
        {
            var refusal = await Assert.ThrowsAsync<RpcException>(async () => await client.GetStatusAsync(new GetStatusRequest(), headers));
            Assert.Equal(StatusCode.Unauthenticated, refusal.StatusCode);
            var streamed = Assert.Throws<RpcException>(() =>
            {
                using var call = client.Watch(new WatchRequest(), headers);
                call.ResponseStream.MoveNext().GetAwaiter().GetResult();
            });
            Assert.Equal(StatusCode.Unauthenticated, streamed.StatusCode);
            var start = await Assert.ThrowsAsync<RpcException>(async () =>
                await client.StartJobAsync(new StartJobRequest { Configuration = ServingCoordinator.TinyJob() }, headers));
            Assert.Equal(StatusCode.Unauthenticated, start.StatusCode);
        }
        // Probes need no token.
        var health = await new Health.HealthClient(coordinator.Channel).CheckAsync(new HealthCheckRequest());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
    }

    [Fact]
    public void TheCommandLineClientTalksToTheCoordinator()
    {
        string[] at = ["--address", coordinator.ApiAddress, "--token", ServingCoordinator.Token];
        var (code, output) = CoordinatorProgram.Run(["status", .. at]);
        Assert.True(code == 0, output);
        Assert.Matches(@"state\s+│ (idle|stopped|completed)", output);
        (code, output) = CoordinatorProgram.Run(["checkpoint", .. at]);
        Assert.Equal(1, code);
        Assert.Contains("error: no job is running (FailedPrecondition)", output);
        (code, output) = CoordinatorProgram.Run(["workers", "--address", coordinator.ApiAddress, "--token", "wrong"]);
        Assert.Equal(1, code);
        Assert.Contains("the bearer token is wrong", output);
    }

    [Theory]
    [InlineData("{ not json", "configuration: is not a valid job configuration")]
    [InlineData("", "configuration: is empty")]
    [InlineData("{\"Model\": {\"Stages\": [2], \"Growth\": [4]}, \"BatchSz\": 5}", "BatchSz")]
    [InlineData("{\"Model\": {\"Stages\": [2], \"Growth\": [4]}, \"LearningRate\": -1}", "configuration: --lr -1 must be positive")]
    [InlineData("{\"Model\": {\"Stages\": [2], \"Growth\": [4], \"CondenseFactor\": 0}}", "configuration: condense factor C=0 must be at least 1")]
    [InlineData("{\"Model\": {\"Stages\": [2], \"Growth\": [4], \"InChannels\": 1}, \"BatchSize\": 2, \"MicroBatches\": 3}",
        "configuration: --batch-size 2 is smaller than --micro-batches 3")]
    public async Task AMalformedJobIsRefusedWithInvalidArgumentNamingTheField(string configuration, string expected)
    {
        var refusal = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.StartJobAsync(new StartJobRequest { Configuration = configuration }, ServingCoordinator.Bearer()));
        Assert.Equal(StatusCode.InvalidArgument, refusal.StatusCode);
        Assert.Contains(expected, refusal.Status.Detail);
    }

    [Fact]
    public async Task OtherMalformedRequestsAreRefusedWithInvalidArgumentNamingTheField()
    {
        var workers = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.StartJobAsync(new StartJobRequest { Configuration = ServingCoordinator.TinyJob(), Workers = -2 }, ServingCoordinator.Bearer()));
        Assert.Equal(StatusCode.InvalidArgument, workers.StatusCode);
        Assert.StartsWith("workers: -2 must not be negative", workers.Status.Detail);
        var path = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.ExportAsync(new ExportRequest { Path = "model.txt" }, ServingCoordinator.Bearer()));
        Assert.Equal(StatusCode.InvalidArgument, path.StatusCode);
        Assert.StartsWith("path: 'model.txt' must end with .ccm", path.Status.Detail);
        var resume = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.StartJobAsync(new StartJobRequest { Resume = Path.Combine(coordinator.Folder, "no-such-run") }, ServingCoordinator.Bearer()));
        Assert.Equal(StatusCode.InvalidArgument, resume.StatusCode);
        Assert.StartsWith("resume: ", resume.Status.Detail);

        // Weights to start from of another model: refused before the job starts, with what does not fit.
        string wider = Path.Combine(coordinator.Folder, "wider.ccm");
        using (var model = new CondenseNet(ServingCoordinator.TinyModel with { Growth = [8, 8] })) ModelFile.Save(model, wider);
        var initFrom = await Assert.ThrowsAsync<RpcException>(async () =>
            await client.StartJobAsync(new StartJobRequest { Configuration = ServingCoordinator.TinyJob(), InitFrom = wider }, ServingCoordinator.Bearer()));
        Assert.Equal(StatusCode.InvalidArgument, initFrom.StatusCode);
        Assert.StartsWith($"init-from: --init-from '{wider}' is not a training-form model of", initFrom.Status.Detail);
        Assert.Contains("of another shape", initFrom.Status.Detail);
    }
}
