using System.Collections.Concurrent;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// A thread of its own for one direction of a node's ring traffic: the sending or the receiving half of each
/// all-reduce runs on it, blocking in socket calls, in the order the all-reduces were started.
/// </summary>
sealed class RingIoThread : IDisposable
{
    readonly BlockingCollection<Action> work = new();
    readonly Thread thread;

    public RingIoThread(string name)
    {
        thread = new Thread(() => { foreach (var action in work.GetConsumingEnumerable()) action(); }) { Name = name, IsBackground = true };
        thread.Start();
    }

    /// <summary>Runs <paramref name="action"/> after what was posted before; it must not throw.</summary>
    public void Post(Action action) => work.Add(action);

    public void Dispose()
    {
        work.CompleteAdding();
        thread.Join();
        work.Dispose();
    }
}
