using System.Text.Json;
using System.Runtime.InteropServices;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Data;
using CondenseCluster.Tests.Training;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// The coordinator's job state machine driven message by message, with a recording host in place of the actor
/// (the real actor, processes and ring are in <see cref="ClusterTrainingTests"/>).
/// </summary>
public class TrainingJobTests : TempFolderTest
{
    sealed class RecordingHost : IJobHost
    {
        public List<(string Worker, object Message)> Sent { get; } = [];
        public List<string> Downed { get; } = [];
        public List<Func<Task<object>>> Work { get; } = [];
        public int Background => Work.Count;
        public JobEnd? End { get; private set; }
        public void Send(string workerId, object message) => Sent.Add((workerId, message));
        void IJobHost.Background(Func<Task<object>> work, Func<string, object> failed) => Work.Add(work); // run only by RunWork
        public void Down(string workerId) => Downed.Add(workerId);
        public void Ended(JobEnd end, string reason) => End = end;
        public T[] All<T>() => Sent.Select(s => s.Message).OfType<T>().ToArray();

        /// <summary>Runs the background work asked for from <paramref name="from"/> on, one by one, and hands each result to the job.</summary>
        public void RunWork(TrainingJob job, int from)
        {
            for (int i = from; i < Work.Count; i++) job.Handle(Work[i]().GetAwaiter().GetResult());
        }
    }

    /// <summary>Replica states of the fake workers: a fetch returns a few bytes (what a checkpoint holds does not matter here).</summary>
    sealed class FetchOnlyStates : IReplicaStates
    {
        public Task<byte[]> FetchAsync(string endpoint, long step) => Task.FromResult(new byte[] { 1, 2, 3 });
        public Task<string> LoadAsync(string endpoint, long step, byte[] state) => throw new InvalidOperationException();
        public Task<bool> GoneAsync(string endpoint) => throw new InvalidOperationException();
    }

    // 640 samples / 64 = 10 steps; with C = 4, stage 1 starts at step 2 (progress 0.2 ≥ 1/6).
    static readonly TrainingOptions Options = LocalTrainingTests.Tiny() with { Dataset = "synthetic" };
    readonly RecordingHost host = new();
    readonly RecordingObserver observer = new();

    TrainingJob StartedJob(params string[] workers) => StartedJob(Options, workers);

    TrainingJob StartedJob(TrainingOptions options, params string[] workers)
    {
        var data = new SyntheticDataset(640);
        var job = new TrainingJob(options, new RunSettings { Device = torch.CPU, OutputFolder = Folder }, (data, data), null,
            new ClusterSettings(new ClusterEndpoint(), 0, workers.Length, 1, "cpu", ChecksumEvery: 1, BucketFloats: 1 << 20), observer, host, new FetchOnlyStates());
        foreach (var w in workers) job.WorkerRegistered(new RegisterWorker(w, $"http://{w}:1", "cpu", 1));
        foreach (var w in workers) job.Handle(new ReplicaReady(w, 0, "initial"));
        return job;
    }

    /// <summary>Importance [G, in] per learned layer that the averaged ring result could be.</summary>
    static float[][,] RandomImportance()
    {
        using var model = new CondenseNet(Options.Model);
        var random = new Random(3);
        return model.LearnedLayers.Select(l =>
        {
            var matrix = new float[l.Layer.Groups, l.Layer.InChannels];
            for (int g = 0; g < matrix.GetLength(0); g++)
                for (int j = 0; j < matrix.GetLength(1); j++)
                    matrix[g, j] = (float)random.NextDouble();
            return matrix;
        }).ToArray();
    }

    static LayerImportance Report(long version, int layer, float[,] matrix) =>
        new(version, layer, MemoryMarshal.AsBytes(matrix.Cast<float>().ToArray().AsSpan()).ToArray());

    /// <summary>Runs the job to its first condensing boundary and answers with importance; returns the expected masks.</summary>
    IReadOnlyList<LayerMask> BroadcastFirstMasks(TrainingJob job, params string[] workers)
    {
        Assert.All(host.All<RunSteps>(), r => Assert.Equal(new RunSteps(0, 2), r));
        foreach (var w in workers) job.Handle(new StepsDone(w, 2, "after-2"));
        Assert.Equal(workers.Length, host.All<ComputeImportance>().Length);

        var importance = RandomImportance();
        for (int i = 0; i < importance.Length; i++) job.Handle(Report(1, i, importance[i]));
        return ModelCondensing.Decide(job.Masks, 2 / 10.0, Options.Model.CondenseFactor, i => importance[i]).Masks;
    }

    [Fact]
    public void EveryWorkerGetsTheSameMaskVersionAndTheJobGoesOnWhenAllChecksumsMatch()
    {
        string[] workers = ["worker-1", "worker-2", "worker-3"];
        var job = StartedJob(workers);
        var expected = BroadcastFirstMasks(job, workers);

        var broadcasts = host.Sent.Where(s => s.Message is ApplyMasks).ToArray();
        Assert.Equal(workers, broadcasts.Select(b => b.Worker));
        var first = (ApplyMasks)broadcasts[0].Message;
        Assert.Equal(1, first.MaskVersion);
        Assert.All(broadcasts, b => Assert.Same(first, b.Message));
        var installed = first.KeptColumns.Select((bits, i) =>
            new LayerMask(first.Stages[i], MaskWire.Unpack(bits, expected[i].Kept.GetLength(0), expected[i].Kept.GetLength(1)))).ToArray();
        Assert.Equal(ModelCondensing.Checksum(expected), ModelCondensing.Checksum(installed));

        foreach (var w in workers) job.Handle(new MasksApplied(w, 1, ModelCondensing.Checksum(expected), "after-2"));
        Assert.Null(host.End);
        Assert.Equal(1, job.MaskVersion);
        Assert.Equal(ModelCondensing.Checksum(expected), ModelCondensing.Checksum(job.Masks));
        Assert.Equal(workers.Length, host.All<RunSteps>().Count(r => r.From == 2));
        var decided = Assert.Single(observer.Of<MasksDecided>());
        Assert.Equal((1L, 2L, 3, ModelCondensing.Checksum(expected)), (decided.Version, decided.Step, decided.Workers, decided.MaskChecksum));
        Assert.Equal(new MasksInForce(1, 2, 3, ModelCondensing.Checksum(expected), "after-2"), Assert.Single(observer.Of<MasksInForce>()));
    }

    [Fact]
    public void AWorkerWhoseMaskChecksumDiffersIsExcludedByNameAndTheOthersResendTheSameMasks()
    {
        string[] workers = ["worker-1", "worker-2", "worker-3"];
        var job = StartedJob(workers);
        var expected = BroadcastFirstMasks(job, workers);

        job.Handle(new MasksApplied("worker-1", 1, ModelCondensing.Checksum(expected), "after-2"));
        job.Handle(new MasksApplied("worker-2", 1, "0123456789abcdef", "after-2"));
        Assert.Null(host.End);
        var excluded = Assert.Single(host.Sent, s => s.Message is Excluded);
        Assert.Equal("worker-2", excluded.Worker);
        var removed = Assert.Single(observer.Of<WorkerRemoved>());
        Assert.Equal(("worker-2", false), (removed.Worker, removed.Gone));
        Assert.Contains("0123456789abcdef", removed.Reason);

        Reformed(job, ["worker-1", "worker-3"], at: 2);
        var resent = host.Sent.Where(s => s.Message is ApplyMasks).Skip(3).ToArray();
        Assert.Equal(["worker-1", "worker-3"], resent.Select(s => s.Worker));
        Assert.All(resent, s => Assert.Equal(1, ((ApplyMasks)s.Message).MaskVersion)); // the same decision, not a new one
    }

    [Fact]
    public void AMinorityWhoseWeightsDivergeIsExcludedNamedAtTheStepItReports()
    {
        string[] workers = ["worker-1", "worker-2", "worker-3"];
        var job = StartedJob(workers);
        job.Handle(new StepReport("worker-1", 0, 2.3 * 32, 3, 32, 10, 1, 0, "same"));
        job.Handle(new StepReport("worker-2", 0, 2.3 * 16, 2, 16, 10, 1, 0, "other"));
        job.Handle(new StepReport("worker-3", 0, 2.3 * 16, 1, 16, 10, 1, 0, "same"));
        Assert.Null(host.End);
        Assert.Equal(new WorkerRemoved("worker-2", Gone: false, "worker-2 diverged: weights at step 1 differ (worker-2 has other; worker-1, worker-3 have same)"),
            Assert.Single(observer.Of<WorkerRemoved>()));
        Assert.Equal(["worker-1", "worker-3"], host.Sent.Where(s => s.Message is AbortSteps).Select(s => s.Worker));
    }

    [Fact]
    public void TwoReplicasThatDisagreeWithoutAMajorityStopTheJob()
    {
        var job = StartedJob("worker-1", "worker-2");
        job.Handle(new StepsDone("worker-1", 2, "one"));
        job.Handle(new StepsDone("worker-2", 2, "other"));
        Assert.Equal(JobEnd.Failed, host.End);
        var failed = Assert.Single(observer.Of<JobFailed>());
        Assert.StartsWith("worker-2 diverged", failed.Error);
        Assert.EndsWith("the job stops rather than train replicas that disagree", failed.Error);
    }

    [Fact]
    public void AWorkersRingErrorNamesThePeerBehindTheEndpointAndStartsARecovery()
    {
        var job = StartedJob("worker-1", "worker-2");
        job.Handle(new WorkerFailed("worker-1", "StreamBroken: rank 0, all-reduce 3: receiving from rank 1 (http://worker-2:1): its stream broke", DataPlane: true,
            AllReduceFailure.StreamBroken));
        Assert.Null(host.End);
        var recovery = Assert.Single(observer.Of<RecoveryStarted>());
        Assert.Equal(AllReduceFailure.StreamBroken, recovery.Failure);
        Assert.Contains("receiving from rank 1 (worker-2 at http://worker-2:1)", recovery.Cause);
        Assert.Equal(["worker-1", "worker-2"], host.Sent.Where(s => s.Message is AbortSteps).Select(s => s.Worker));
        Assert.Equal(1, host.Background); // the probe of endpoints that do not answer
    }

    [Fact]
    public void AfterALossTheSurvivorsContinueFromTheFurthestStepAndRedoTheStepInFlight()
    {
        var job = StartedJob("worker-1", "worker-2", "worker-3");
        job.Handle(new StepReport("worker-1", 0, 2.0 * 22, 8, 22, 100, 5, 1, null));
        job.WorkerLost("worker-3", "process exited with code 137");
        Assert.Equal(["worker-3"], host.Downed);
        Assert.Equal(["worker-1", "worker-2"], host.Sent.Where(s => s.Message is AbortSteps).Select(s => s.Worker));
        // worker-1 completed step 0 before the ring broke, worker-2 did not receive all of it: it copies worker-1's state.
        job.Handle(new StepsAborted("worker-1", 1));
        job.Handle(new StepsAborted("worker-2", 0));
        var joins = host.All<JoinJob>().Skip(3).ToArray();
        Assert.Equal([0, 1], joins.Select(j => j.Rank));
        Assert.All(joins, j => Assert.Equal(new StateSource("http://worker-1:1", 1), j.From));
        Assert.All(joins, j => Assert.Equal(2, j.RingGeneration));
        var planned = Assert.Single(observer.Of<RecoveryPlanned>());
        Assert.Equal((1L, true, "worker-1"), (planned.Step, planned.StepRedone, planned.Source));
        Assert.Equal(["worker-1", "worker-2"], planned.Workers);
        Assert.Equal(["worker-2"], planned.Behind);
        // Step 0 counts once, with the reports there are.
        Assert.Equal([0L], observer.Steps.Select(s => s.Step));

        foreach (var w in new[] { "worker-1", "worker-2" }) job.Handle(new ReplicaReady(w, 1, "at-1"));
        Assert.Equal(new RunSteps(1, 2), host.All<RunSteps>().Last());
        var continued = Assert.Single(observer.Of<TrainingContinues>());
        Assert.Equal((RingChange.Recovery, "recovered from the loss of worker-3", 1L), (continued.Change, continued.Why, continued.Step));
        Assert.Equal(["worker-1", "worker-2"], continued.Workers);
    }

    [Theory]
    [InlineData("run-a", true)]   // a restarted coordinator of the same run: it continues from the workers' memory
    [InlineData("run-b", false)]  // a new run of the same configuration: the replica another run trained is dropped
    public void OnlyTheSameRunContinuesFromAWorkersMemory(string runId, bool sameRun)
    {
        var data = new SyntheticDataset(640);
        var job = new TrainingJob(Options, new RunSettings { Device = torch.CPU, OutputFolder = Folder, RunId = runId }, (data, data), null,
            new ClusterSettings(new ClusterEndpoint(), 0, 2, 1, "cpu", ChecksumEvery: 1, BucketFloats: 1 << 20), observer, host, new FetchOnlyStates());
        var held = new HeldReplica(HeldReplica.KeyOf("run-a", JsonSerializer.Serialize(Options)), 7);
        job.WorkerRegistered(new RegisterWorker("worker-1", "http://worker-1:1", "cpu", 1));
        job.WorkerRegistered(new RegisterWorker("worker-2", "http://worker-2:1", "cpu", 1, held));

        var arrived = observer.Of<WorkerArrived>().Single(w => w.Worker == "worker-2");
        Assert.Equal(sameRun ? (7L, (long?)null) : (null, 7L), (arrived.HeldStep, arrived.OtherRunStep));
        var joins = host.All<JoinJob>();
        Assert.Equal(2, joins.Length);
        Assert.All(joins, j => Assert.Equal(HeldReplica.KeyOf(runId, JsonSerializer.Serialize(Options)), j.JobKey)); // what a worker keeps its replica by
        Assert.All(joins, j => Assert.Equal(sameRun ? new StateSource("http://worker-2:1", 7) : null, j.From));
        Assert.Equal(sameRun ? 1 : 0, observer.Of<ContinuingFromWorkers>().Length);
    }

    [Fact]
    public void AWorkerLeavingAtOnceIsLeftOutEvenWhenItsRingClosingStartedARecoveryThatCountedOnIt()
    {
        var job = StartedJob("worker-1", "worker-2", "worker-3");
        // worker-2's neighbour reports the closed ring before worker-2's own word arrives: the recovery asks all three.
        job.Handle(new RingBroken("worker-1", 1, "rank 1 closed its connection"));
        Assert.Equal(["worker-1", "worker-2", "worker-3"], host.Sent.Where(s => s.Message is AbortSteps).Select(s => s.Worker));
        job.Handle(new StepsAborted("worker-1", 1));
        job.Handle(new StepsAborted("worker-3", 1));
        Assert.Empty(observer.Of<RecoveryPlanned>()); // still waiting for worker-2, which will never answer

        job.Handle(new WorkerLeaving("worker-2", "SIGTERM"));
        Assert.Equal(new WorkerRemoved("worker-2", Gone: true, "it left at once on SIGTERM"), Assert.Single(observer.Of<WorkerRemoved>()));
        Assert.Equal(["worker-2"], host.Downed);
        Assert.Equal(["worker-1", "worker-3"], Assert.Single(observer.Of<RecoveryPlanned>()).Workers);
    }

    [Fact]
    public void AWorkerThatRegistersMidJobIsAdmittedAtTheNextStepWithAPeersState()
    {
        var job = StartedJob("worker-1", "worker-2");
        job.WorkerRegistered(new RegisterWorker("worker-3", "http://worker-3:1", "cpu", 1));
        Assert.Equal([("worker-1", 1L), ("worker-2", 1L)], host.Sent.Where(s => s.Message is Yield).Select(s => (s.Worker, ((Yield)s.Message).RingGeneration)));
        // The ring agreed to stop after step 1 of the segment [0, 2).
        foreach (var w in new[] { "worker-1", "worker-2" }) job.Handle(new StepsDone(w, 1, "at-1"));
        var joins = host.Sent.Where(s => s.Message is JoinJob).Skip(2).ToArray();
        Assert.Equal(["worker-1", "worker-2", "worker-3"], joins.Select(j => j.Worker));
        Assert.All(joins, j => Assert.Equal(new StateSource("http://worker-1:1", 1), ((JoinJob)j.Message).From));
        Reformed(job, ["worker-1", "worker-2", "worker-3"], at: 1, alreadyFormed: true);
        Assert.Equal(3, host.All<RunSteps>().Count(r => r == new RunSteps(1, 2)));
    }

    /// <summary>Answers a recovery's abort with <paramref name="at"/> from every survivor and the new ring's join.</summary>
    void Reformed(TrainingJob job, string[] survivors, long at, bool alreadyFormed = false)
    {
        if (!alreadyFormed) foreach (var w in survivors) job.Handle(new StepsAborted(w, at));
        foreach (var w in survivors) job.Handle(new ReplicaReady(w, at, $"at-{at}"));
        Assert.Null(host.End);
    }

    [Fact]
    public void ARingThatFailsAgainAndAgainWithoutAStepDoneEndsTheJobWithItsCause()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        long generation = 1;
        void BreakAndReform(long at)
        {
            job.Handle(new RingBroken("worker-2", generation++, "connection reset by peer"));
            Reformed(job, workers, at);
        }
        BreakAndReform(at: 0);
        // The workers stand one step further at the next recovery: a step was done, the count starts there.
        for (int i = 0; i < RecoveryRound.MaxFruitless; i++) BreakAndReform(at: 1);
        Assert.Empty(observer.Of<JobFailed>());

        job.Handle(new RingBroken("worker-2", generation, "connection reset by peer"));
        foreach (var w in workers) job.Handle(new StepsAborted(w, 1));
        Assert.Equal(JobEnd.Failed, host.End);
        var failed = Assert.Single(observer.Of<JobFailed>());
        Assert.StartsWith($"the ring failed {RecoveryRound.MaxFruitless + 1} times in a row without a step done (at step 1; " +
            "the last: recovered from worker-2's ring broke: connection reset by peer", failed.Error);
    }

    [Fact]
    public void AgreeingStepReportsBecomeOneGlobalStep()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        job.Handle(new StepReport("worker-1", 0, 2.0 * 32, 8, 32, 100, 5, 1, "same"));
        job.Handle(new StepReport("worker-2", 0, 3.0 * 32, 16, 32, 120, 2, 0, "same"));
        var step = Assert.Single(observer.Steps);
        Assert.Equal(2.5, step.Loss, 12);
        Assert.Equal(24 / 64.0, step.Accuracy, 12);
        Assert.Equal(64 / 0.122, step.ImagesPerSecond, 6);
        Assert.Null(host.End);
    }

    [Fact]
    public void ACheckpointRequestCutsTheSegmentShortAndCheckpointsAtTheStepEveryReplicaStoppedAt()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        var request = new TaskCompletionSource<(string Path, long Step)>();
        job.RequestCheckpoint(request);
        // The replicas agree through the ring on the step to stop after, as for a join.
        Assert.Equal(workers, host.Sent.Where(s => s.Message is Yield).Select(s => s.Worker));
        foreach (var w in workers) job.Handle(new StepsDone(w, 1, "after-1"));
        Assert.Equal(workers, host.Sent.Where(s => s.Message is PrepareState { Step: 1 }).Select(s => s.Worker));
        Assert.DoesNotContain(host.All<RunSteps>(), r => r.From == 1); // the checkpoint comes first
        Assert.False(request.Task.IsCompleted); // answered once the file is written

        job.Interrupt("the test");
        Assert.Equal(JobEnd.Aborted, host.End);
        // No checkpoint was written, so the message does not send the user to --resume a folder that has none.
        var stopped = Assert.Single(observer.Of<JobStopped>());
        Assert.Equal(("the test", 1L), (stopped.By, stopped.Steps));
        Assert.StartsWith("no checkpoint had been written yet", stopped.Resume);
        Assert.Contains("the job ended before the checkpoint", Assert.Throws<AggregateException>(() => request.Task.Wait()).InnerException!.Message);
        var late = new TaskCompletionSource<(string Path, long Step)>();
        job.RequestCheckpoint(late);
        Assert.Contains("the job has ended", Assert.Throws<AggregateException>(() => late.Task.Wait()).InnerException!.Message);
    }

    [Fact]
    public void ACheckpointThatCannotBeWrittenIsReportedAndTrainingGoesOn()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        job.Handle(new CheckpointFailed("No space left on device", 0)); // a full disk, as the writer reports it
        Assert.Null(host.End);
        Assert.Equal(new CheckpointWriteFailed(0, "No space left on device", null), Assert.Single(observer.Of<CheckpointWriteFailed>()));
        BroadcastFirstMasks(job, workers); // the job goes on to its next boundary
        Assert.Equal(workers, host.Sent.Where(s => s.Message is ApplyMasks).Select(s => s.Worker));
    }

    [Fact]
    public void ATimedCheckpointCutsTheSegmentAfterAStepThatEndsPastItsMinutes()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(Options with { CheckpointEveryMinutes = 1e-9 }, workers); // due after the first step
        Assert.Empty(host.All<Yield>());
        foreach (var w in workers) job.Handle(new StepReport(w, 0, 2.0 * 32, 8, 32, 100, 5, 1, "same"));
        Assert.Equal(workers, host.Sent.Where(s => s.Message is Yield).Select(s => s.Worker));
        foreach (var w in workers) job.Handle(new StepsDone(w, 1, "after-1"));
        Assert.Equal(workers, host.Sent.Where(s => s.Message is PrepareState { Step: 1 }).Select(s => s.Worker)); // not a scheduled boundary
    }

    [Fact]
    public void AGracefulStopEndsTheSegmentAfterTheStepInFlightCheckpointsThatBoundaryAndEndsTheJob()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        int work = host.Background;
        job.RequestStop("SIGTERM");
        Assert.Equal(new StopRequested("SIGTERM", 0), Assert.Single(observer.Of<StopRequested>()));
        Assert.Equal(workers, host.Sent.Where(s => s.Message is Yield).Select(s => s.Worker));
        job.RequestStop("SIGTERM"); // a repeated request changes nothing
        Assert.Equal(2, host.All<Yield>().Length);

        // The replicas agreed to stop after step 1; its state is checkpointed, and nothing runs after it.
        foreach (var w in workers) job.Handle(new StepsDone(w, 1, "after-1"));
        Assert.Equal(workers, host.Sent.Where(s => s.Message is PrepareState { Step: 1 }).Select(s => s.Worker));
        foreach (var w in workers) job.Handle(new StatePrepared(w, 1, "after-1"));
        host.RunWork(job, work); // the fetch, the write, the wait for it
        Assert.DoesNotContain(host.All<RunSteps>(), r => r.From == 1);
        Assert.Equal(JobEnd.Stopped, host.End);
        string written = Path.Combine(Folder, "checkpoints", "checkpoint-000000001.ccc");
        Assert.Equal(new CheckpointWritten(written, 1), Assert.Single(observer.Of<CheckpointWritten>()));
        Assert.Equal(1, Checkpoint.Read(written).Header.Step);
        var stopped = Assert.Single(observer.Of<JobStopped>());
        Assert.Equal(("SIGTERM", 1L), (stopped.By, stopped.Steps));
        Assert.NotNull(stopped.Seconds);
        Assert.Equal($"resume with --resume {Folder} (from its newest checkpoint, checkpoint-000000001.ccc)", stopped.Resume);
        Assert.Equal(workers, host.Sent.Where(s => s.Message is JobEnded).Select(s => s.Worker));
    }

    [Fact]
    public void AWorkersSigtermAsksForAGracefulStopAndAStopAtOnceOverridesOne()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        job.Handle(new WorkerTerminating("worker-2", "SIGTERM"));
        Assert.Equal("SIGTERM of worker-2", Assert.Single(observer.Of<StopRequested>()).By);
        Assert.Equal(2, host.All<Yield>().Length);
        job.Interrupt("SIGTERM again"); // while the step in flight completes
        Assert.Equal(JobEnd.Aborted, host.End);
        Assert.Null(Assert.Single(observer.Of<JobStopped>()).Seconds);
    }

    [Fact]
    public void TheObserverHearsEachWorkersStateAndItsStepsTimingsAndBytes()
    {
        string[] workers = ["worker-1", "worker-2"];
        var job = StartedJob(workers);
        job.Handle(new StepReport("worker-1", 0, 1.0, 3, 32, 100, 20, 5, null, AllReduceBytes: 4096));
        job.WorkerLost("worker-2", "process exited with code 137");
        var reports = observer.Workers;
        Assert.Equal([WorkerState.Registered, WorkerState.Registered, WorkerState.Training, WorkerState.Training, WorkerState.Training, WorkerState.Lost],
            reports.Select(r => r.State));
        var step = reports.Single(r => r.Step == 0);
        Assert.Equal(("worker-1", 100.0, 20.0, 5.0, 4096L, "http://worker-1:1"), (step.Worker, step.ComputeMs, step.AllReduceMs, step.DataWaitMs, step.AllReduceBytes, step.Endpoint));
        Assert.Equal("process exited with code 137", reports[^1].Detail);
        Assert.Equal(new WorkerRemoved("worker-2", Gone: true, "process exited with code 137"), Assert.Single(observer.Of<WorkerRemoved>()));
    }
}
