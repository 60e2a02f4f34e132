using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

/// <summary>
/// Writes the job's checkpoints off the actor, one after another (so that the store keeps its newest few in order),
/// and answers the checkpoint requests of the control API with the file that follows them.
/// </summary>
sealed class CheckpointWriter(CheckpointStore store, TrainingOptions options)
{
    readonly List<TaskCompletionSource<(string Path, long Step)>> requests = [];
    Task writes = Task.CompletedTask;
    (long Step, Task<string> Writing)? last;

    public string Folder => store.Folder;

    /// <summary>The newest checkpoint on disk, if any.</summary>
    public string? Newest => store.List().FirstOrDefault();

    /// <summary>Is a checkpoint wanted at the next step boundary?</summary>
    public bool Requested => requests.Count > 0;

    public void Request(TaskCompletionSource<(string Path, long Step)> request) => requests.Add(request);

    /// <summary>The newest write this job asked for: its step, and the task that ends with the file on disk.</summary>
    public (long Step, Task<string> Writing)? Last => last;

    /// <summary>Writes the state of step <paramref name="step"/> after the writes before it; answers the requests made until now with it.</summary>
    public Task<string> Write(long step, byte[] state)
    {
        var writing = writes.ContinueWith(_ => store.Save(options, step, writer => writer.Write(state)), TaskScheduler.Default);
        writes = writing;
        last = (step, writing);
        var answered = requests.ToArray();
        requests.Clear();
        writing.ContinueWith(written =>
        {
            foreach (var request in answered)
                if (written.IsCompletedSuccessfully) request.TrySetResult((written.Result, step));
                else request.TrySetException(written.Exception!.GetBaseException());
        }, TaskScheduler.Default);
        return writing;
    }

    /// <summary>The job ended: requests still waiting fail with <paramref name="reason"/>.</summary>
    public void Abandon(string reason)
    {
        foreach (var request in requests) request.TrySetException(new InvalidOperationException($"the job ended before the checkpoint: {reason}"));
        requests.Clear();
    }
}
