using CondenseCluster.Shared.Comm.Wire;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Sums a float32 buffer across the ring (<see cref="RingPlan"/>) over one <see cref="RingTransport"/> generation.
/// Sending and receiving run concurrently and pipeline by message: the slice a rank sends at step k+1 is the slice it
/// received at step k, so it goes out as soon as it has arrived.
/// </summary>
public sealed class RingAllReduce(int rank, int size, RingTransport? transport, DataPlaneOptions options)
{
    public int Rank { get; } = rank;
    public int Size { get; } = size;
    long bytesSent;

    /// <summary>Gradient bytes this rank has written to the ring so far (payload, without framing).</summary>
    public long BytesSent => Interlocked.Read(ref bytesSent);

    /// <summary>
    /// Replaces <paramref name="buffer"/> by the elementwise sum over all ranks (the caller divides), bit-identical on
    /// every rank. Every rank passes the same length, the same <paramref name="operationId"/> sequence and the same
    /// <paramref name="precision"/>. Fails with <see cref="AllReduceException"/>; a cancelled
    /// <paramref name="cancellationToken"/> throws OperationCanceledException. After either, the buffer holds partial
    /// sums and the ring must be configured anew.
    /// </summary>
    public async Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default)
    {
        if (Size == 1) return;
        var ring = transport ?? throw new InvalidOperationException("a ring of several workers needs a transport");
        var abort = ring.BeginOperation();
        using var watchdog = new CancellationTokenSource(options.ProgressTimeout);
        using var operation = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, abort, watchdog.Token);
        var progress = new Progress(watchdog, options.ProgressTimeout);
        using var received = new SemaphoreSlim(0);
        var sending = SendAllAsync(ring, buffer, operationId, precision, received, progress, operation.Token);
        var receiving = ReceiveAllAsync(ring, buffer, operationId, received, progress, operation.Token);
        try
        {
            var first = await Task.WhenAny(sending, receiving);
            if (!first.IsCompletedSuccessfully)
            {
                // A write blocked by a stalled peer may not see its token: resetting the stream frees it.
                ring.EndOperation(succeeded: false);
                operation.Cancel();
            }
            try { await (first == sending ? receiving : sending); }
            catch when (!first.IsCompletedSuccessfully) { } // a consequence of the first failure
            await first;
            ring.EndOperation(succeeded: true);
        }
        catch (Exception e)
        {
            ring.EndOperation(succeeded: false);
            cancellationToken.ThrowIfCancellationRequested(); // the caller's own cancellation, whatever a cut write threw
            var (reason, what) = e is AllReduceException failure ? (failure.Reason, failure.Detail)
                : abort.IsCancellationRequested ? (AllReduceFailure.Aborted, "the ring was aborted")
                : watchdog.IsCancellationRequested ? (AllReduceFailure.Timeout, $"no message moved for {options.ProgressTimeout.TotalSeconds:0.#} s")
                : (AllReduceFailure.StreamBroken, e.Message);
            throw new AllReduceException(reason, $"rank {Rank}, all-reduce {operationId}, generation {ring.Generation}: {what}; {progress.Describe(ring)}", e);
        }
    }

    async Task SendAllAsync(RingTransport ring, Memory<float> buffer, long operationId, WirePrecision precision, SemaphoreSlim received,
        Progress progress, CancellationToken ct)
    {
        bool half = precision == WirePrecision.Float16;
        foreach (var slice in RingPlan.Sends(Rank, Size, buffer.Length, options.MessageFloats))
        {
            // From the second step on, each slice is one the left neighbour delivered at the previous step.
            if (slice is not { Phase: RingPhase.ReduceScatter, Step: 0 }) await received.WaitAsync(ct);
            var values = buffer.Slice(slice.Offset, slice.Length);
            // The chunk's owner keeps what the others will receive; later steps forward values a half already holds exactly.
            if (half && slice is { Phase: RingPhase.AllGather, Step: 0 }) FloatPayload.RoundThroughHalf(values.Span);
            // Not copied: gRPC serializes the frame before the write completes, and no rank writes a slice while sending it.
            await ring.SendAsync(RingFrame.Outgoing(ring.Generation, operationId, slice, values, precision), ct);
            Interlocked.Add(ref bytesSent, (long)slice.Length * (half ? 2 : sizeof(float)));
            progress.Sent();
        }
    }

    async Task ReceiveAllAsync(RingTransport ring, Memory<float> buffer, long operationId, SemaphoreSlim received, Progress progress, CancellationToken ct)
    {
        foreach (var slice in RingPlan.Receives(Rank, Size, buffer.Length, options.MessageFloats))
        {
            var message = await ring.ReceiveAsync(ct);
            var payload = message.Payload.Span;
            if (message.Generation != ring.Generation || message.Operation != operationId || message.Phase != slice.Phase
                || message.Step != slice.Step || message.Chunk != slice.Chunk || message.Offset != slice.Offset || payload.Length != slice.Length)
                throw new AllReduceException(AllReduceFailure.Mismatch,
                    $"rank {Rank} expected all-reduce {operationId} of generation {ring.Generation} {slice} from {ring.Left}, got all-reduce "
                    + $"{message.Operation} of generation {message.Generation} {message.Phase} step {message.Step} chunk {message.Chunk} "
                    + $"at {message.Offset} with {payload.Length} values: do all ranks run the same all-reduces on buffers of the same length?");
            var target = buffer.Span.Slice(slice.Offset, slice.Length);
            if (slice.Phase == RingPhase.ReduceScatter) FloatPayload.AddTo(payload, target);
            else payload.CopyTo(target);
            message.Release();
            progress.Received();
            received.Release();
        }
    }

    /// <summary>Counts messages and restarts the no-progress timer on each one.</summary>
    sealed class Progress(CancellationTokenSource watchdog, TimeSpan timeout)
    {
        int sent, received;

        public void Sent() { Interlocked.Increment(ref sent); watchdog.CancelAfter(timeout); }

        public void Received() { Interlocked.Increment(ref received); watchdog.CancelAfter(timeout); }

        public string Describe(RingTransport ring) =>
            $"{Volatile.Read(ref received)} messages received from {ring.Left}, {Volatile.Read(ref sent)} sent to {ring.Right}";
    }
}
