using System.CommandLine;

namespace CondenseCluster.Coordinator.Cli;

/// <summary><c>serve</c>: a coordinator without a job; jobs are started through the control API (<c>start</c>).</summary>
static class ServeCommand
{
    public static Command Create(string allocator)
    {
        var node = new NodeOptions();
        var command = new Command("serve", "run a coordinator that waits for jobs from the control API (condense-coordinator start --config job.json)");
        foreach (var option in node.All) command.Options.Add(option);
        command.SetAction(result => node.Run(result, allocator, async (coordinator, interrupted) =>
        {
            Console.WriteLine("waiting for jobs from the control API; Ctrl+C or SIGTERM stops (a running job with a checkpoint first)");
            try { await Task.Delay(Timeout.Infinite, interrupted); }
            catch (OperationCanceledException) { }
            await NodeOptions.StopRunning(coordinator, "the coordinator's shutdown", now: false);
            return 0;
        }));
        return command;
    }
}
