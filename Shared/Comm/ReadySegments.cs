namespace CondenseCluster.Shared.Comm;

/// <summary>
/// How many received segments an all-reduce's sending half may forward: the receiving half counts them up, the sending
/// half waits for each. Blocks without spinning, like <see cref="RingIoThread"/>.
/// </summary>
sealed class ReadySegments
{
    readonly object gate = new();
    int ready;
    bool stopped;

    public void Add()
    {
        lock (gate)
        {
            ready++;
            Monitor.Pulse(gate);
        }
    }

    /// <summary>Takes one; throws OperationCanceledException once <see cref="Stop"/> was called.</summary>
    public void Take()
    {
        lock (gate)
        {
            while (ready == 0 && !stopped) Monitor.Wait(gate);
            if (stopped) throw new OperationCanceledException("the all-reduce failed");
            ready--;
        }
    }

    /// <summary>The all-reduce failed: a waiting <see cref="Take"/> returns at once.</summary>
    public void Stop()
    {
        lock (gate)
        {
            stopped = true;
            Monitor.PulseAll(gate);
        }
    }
}
