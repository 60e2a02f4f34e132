using System.Threading.Channels;
using CondenseCluster.Shared.Comm.Wire;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Messages from the left neighbour, one bounded queue per ring generation. Streams of generations older than the
/// current one are read and dropped (leftovers of an aborted attempt); newer ones are kept, because a left neighbour may
/// configure the next ring and start sending before this worker has. A full queue stops reading the stream, which
/// slows the sender through HTTP/2 flow control.
/// </summary>
sealed class RingInbox(int capacity)
{
    sealed class Queue(int capacity)
    {
        public Channel<RingFrame> Messages { get; } =
            Channel.CreateBounded<RingFrame>(new BoundedChannelOptions(capacity) { SingleReader = true });
        public Exception? Ended { get; set; }
        public Action<Exception>? OnEnded { get; set; }
    }

    readonly object gate = new();
    readonly Dictionary<long, Queue> queues = [];
    long current = long.MinValue;

    /// <summary>
    /// Makes <paramref name="generation"/> current and returns its messages; <paramref name="onEnded"/> runs once, when
    /// the left neighbour's stream of that generation ends (at once if it already has).
    /// </summary>
    public ChannelReader<RingFrame> Open(long generation, Action<Exception> onEnded)
    {
        Queue queue;
        lock (gate)
        {
            current = generation;
            foreach (long old in queues.Keys.Where(g => g < generation).ToList())
            {
                queues.Remove(old, out var stale);
                stale!.Messages.Writer.TryComplete();
            }
            queue = QueueOf(generation);
            queue.OnEnded = onEnded;
        }
        if (queue.Ended is { } ended) onEnded(ended);
        return queue.Messages.Reader;
    }

    /// <summary>Queues <paramref name="message"/>, or releases it when nobody will read it.</summary>
    public async ValueTask DeliverAsync(long generation, RingFrame message, CancellationToken cancellationToken)
    {
        ChannelWriter<RingFrame> writer;
        lock (gate)
        {
            if (generation < current)
            {
                message.Release();
                return;
            }
            writer = QueueOf(generation).Messages.Writer;
        }
        try { await writer.WriteAsync(message, cancellationToken); }
        catch (ChannelClosedException) { message.Release(); } // the generation ended meanwhile: nobody will read it
    }

    /// <summary>The left neighbour's stream of <paramref name="generation"/> ended; queued messages stay readable first.</summary>
    public void StreamEnded(long generation, string what, Exception? cause = null)
    {
        // Always an IOException: a reader must never mistake the end of a stream for its own cancellation.
        var reason = new IOException(cause == null ? what : $"{what}: {cause.Message}", cause);
        Action<Exception>? onEnded;
        lock (gate)
        {
            if (generation < current) return;
            var queue = QueueOf(generation);
            if (queue.Ended != null) return;
            queue.Ended = reason;
            queue.Messages.Writer.TryComplete(reason);
            onEnded = queue.OnEnded;
        }
        onEnded?.Invoke(reason);
    }

    /// <summary>Ends every queue: the worker is shutting down.</summary>
    public void Close()
    {
        lock (gate)
        {
            current = long.MaxValue;
            foreach (var queue in queues.Values) queue.Messages.Writer.TryComplete();
            queues.Clear();
        }
    }

    Queue QueueOf(long generation)
    {
        if (!queues.TryGetValue(generation, out var queue)) queues[generation] = queue = new Queue(capacity);
        return queue;
    }
}
