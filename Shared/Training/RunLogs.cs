namespace CondenseCluster.Shared.Training;

/// <summary>What every run leaves in its output folder as it goes: metrics.jsonl and TensorBoard event files.</summary>
public sealed class RunLogs : IDisposable
{
    readonly MetricsLog metrics;
    readonly TensorBoardLog tensorBoard;

    public RunLogs(string folder)
    {
        metrics = new MetricsLog(Path.Combine(folder, "metrics.jsonl"));
        try { tensorBoard = new TensorBoardLog(folder); }
        catch
        {
            metrics.Dispose();
            throw;
        }
        Observer = new Observers(metrics, tensorBoard);
    }

    /// <summary>Writes to both logs.</summary>
    public ITrainingObserver Observer { get; }

    public void Dispose()
    {
        metrics.Dispose();
        tensorBoard.Dispose();
    }
}
