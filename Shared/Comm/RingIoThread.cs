namespace CondenseCluster.Shared.Comm;

/// <summary>
/// A thread of its own for one direction of a node's ring traffic: the sending or the receiving half of each
/// all-reduce runs on it, blocking in socket calls, in the order the all-reduces were started. Waiting for work does
/// not spin (a monitor, not a spinning semaphore): with many ranks to a core, spinning threads took the time slices
/// the ranks whose data had arrived needed (BENCHMARKS.md).
/// </summary>
sealed class RingIoThread : IDisposable
{
    readonly Queue<Action> work = new();
    readonly Thread thread;
    bool closed;

    public RingIoThread(string name)
    {
        thread = new Thread(Run) { Name = name, IsBackground = true };
        thread.Start();
    }

    /// <summary>Runs <paramref name="action"/> after what was posted before; it must not throw.</summary>
    public void Post(Action action)
    {
        lock (work)
        {
            ObjectDisposedException.ThrowIf(closed, this);
            work.Enqueue(action);
            Monitor.Pulse(work);
        }
    }

    void Run()
    {
        while (true)
        {
            Action action;
            lock (work)
            {
                while (work.Count == 0 && !closed) Monitor.Wait(work);
                if (work.Count == 0) return;
                action = work.Dequeue();
            }
            action();
        }
    }

    /// <summary>Runs what was posted, then ends the thread.</summary>
    public void Dispose()
    {
        lock (work)
        {
            closed = true;
            Monitor.Pulse(work);
        }
        thread.Join();
    }
}
