using System.CommandLine;
using CondenseCluster.Coordinator.Cluster;

namespace CondenseCluster.Coordinator.Cli;

/// <summary><c>serve</c>: a coordinator without a job; jobs are started through the control API (<c>start</c>).</summary>
static class ServeCommand
{
    public static Command Create(string allocator)
    {
        var node = new NodeOptions();
        var resumeIfPresent = new Option<string?>("--resume-if-present") { Description = "on start, resume the run in this folder if one has started there and not finished (for restarted pods)" };
        var command = new Command("serve", $"run a coordinator that waits for jobs from the control API (condense-coordinator start --config job.json). On SIGINT or SIGTERM {NodeOptions.GracefulStop}");
        foreach (var option in node.All.Append(resumeIfPresent)) command.Options.Add(option);
        command.SetAction(result => node.Run(result, allocator, async (coordinator, interrupted) =>
        {
            if (result.GetValue(resumeIfPresent) is { } runFolder && CoordinatorNode.ResumeIfPresent(new JobRequest(null), runFolder) is { Resume: not null } stopped)
            {
                // A run that cannot be resumed must not take the control API down with it: the coordinator serves on.
                try { await coordinator.StartAsync(stopped); }
                catch (ArgumentException e) { Console.Error.WriteLine($"error: the run in {runFolder} cannot be resumed: {e.Message}"); }
            }
            Console.WriteLine("waiting for jobs from the control API; Ctrl+C or SIGTERM stops (a running job with a checkpoint first)");
            try { await Task.Delay(Timeout.Infinite, interrupted); }
            catch (OperationCanceledException) { }
            await NodeOptions.StopRunning(coordinator, "the coordinator's shutdown", now: false);
            return 0;
        }));
        return command;
    }
}
