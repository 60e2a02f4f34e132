using System.Text.Json;
using System.Text.Json.Serialization;
using CondenseCluster.Coordinator.Cluster;
using CondenseCluster.Shared.Control;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using Grpc.Core;

namespace CondenseCluster.Coordinator.Control;

/// <summary>
/// The control API (control.proto). Calls are authenticated by <see cref="BearerTokenInterceptor"/>; a request that
/// cannot be served is refused with INVALID_ARGUMENT naming the field, or FAILED_PRECONDITION naming the state.
/// </summary>
public sealed class ControlService(IJobControl jobs, JobMonitor monitor) : Shared.Control.Control.ControlBase
{
    static readonly JsonSerializerOptions Configuration = new() { UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow };
    // A graceful stop takes a step and a state fetch; past this, the call answers with the status while the stop goes on.
    static readonly TimeSpan StopWait = TimeSpan.FromSeconds(60);

    public override async Task<JobStatus> StartJob(StartJobRequest request, ServerCallContext context)
    {
        if (request.Workers < 0) throw Invalid("workers", $"{request.Workers} must not be negative (0: the coordinator's --workers)");
        TrainingOptions? options = null; // resuming without one: the checkpoint's configuration is used
        if (request.Configuration.Trim().Length > 0) options = ParseConfiguration(request.Configuration);
        else if (request.Resume.Length == 0) throw Invalid("configuration", "is empty: send a job configuration as JSON (a run's job.json), or resume");
        try
        {
            await jobs.StartAsync(new JobRequest(options, Blank(request.Output), request.Workers, Blank(request.Resume), InitFrom: Blank(request.InitFrom)));
        }
        catch (InvalidOperationException e) { throw Refused(e.Message); }
        catch (JobRequestException e) { throw Invalid(e.Field, e.Message); }
        return monitor.Status();
    }

    static TrainingOptions ParseConfiguration(string json)
    {
        try
        {
            var options = JsonSerializer.Deserialize<TrainingOptions>(json, Configuration)
                ?? throw Invalid("configuration", "is null: send a JSON object");
            options.Validate();
            return options;
        }
        catch (JsonException e) { throw Invalid("configuration", $"is not a valid job configuration: {e.Message}"); }
        catch (Exception e) when (e is ArgumentException or ConfigurationException) { throw Invalid("configuration", e.Message); }
    }

    public override Task<JobStatus> GetStatus(GetStatusRequest request, ServerCallContext context) => Task.FromResult(monitor.Status());

    public override async Task Watch(WatchRequest request, IServerStreamWriter<JobUpdate> responseStream, ServerCallContext context)
    {
        long after = request.FromStart ? 0 : monitor.Sequence; // only what happens from now on
        await foreach (var update in monitor.Watch(after, context.CancellationToken))
            await responseStream.WriteAsync(update, context.CancellationToken);
    }

    public override async Task<JobStatus> StopJob(StopJobRequest request, ServerCallContext context)
    {
        Task<JobOutcome> stopped;
        try { stopped = jobs.StopAsync("a control API call", request.Now); }
        catch (InvalidOperationException e) { throw Refused(e.Message); }
        try { await stopped.WaitAsync(StopWait, context.CancellationToken); }
        catch (TimeoutException) { } // still checkpointing: the status says where the job stands
        return monitor.Status();
    }

    public override async Task<CheckpointReply> Checkpoint(CheckpointRequest request, ServerCallContext context)
    {
        try
        {
            var (path, step) = await jobs.CheckpointAsync().WaitAsync(context.CancellationToken);
            return new CheckpointReply { Path = path, Step = step };
        }
        catch (InvalidOperationException e) { throw Refused(e.Message); }
    }

    public override async Task<ExportReply> Export(ExportRequest request, ServerCallContext context)
    {
        try
        {
            var (path, step, cost) = await jobs.ExportAsync(Blank(request.Path)).WaitAsync(context.CancellationToken);
            return new ExportReply { Path = path, Step = step, Parameters = cost.Parameters, Flops = cost.Flops };
        }
        catch (InvalidOperationException e) { throw Refused(e.Message); }
        catch (JobRequestException e) { throw Invalid(e.Field, e.Message); }
    }

    public override Task<WorkerList> ListWorkers(ListWorkersRequest request, ServerCallContext context)
    {
        var list = new WorkerList();
        list.Workers.Add(monitor.Workers());
        return Task.FromResult(list);
    }

    static string? Blank(string value) => value.Length == 0 ? null : value;

    static RpcException Invalid(string field, string problem) => new(new Status(StatusCode.InvalidArgument, $"{field}: {problem}"));

    static RpcException Refused(string why) => new(new Status(StatusCode.FailedPrecondition, why));
}
