using System.Runtime.InteropServices;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// Sums a float32 buffer across the ring (<see cref="RingPlan"/>) over one <see cref="IRingLink"/> generation. The
/// sending and the receiving half run at once, each on its own thread, and pipeline by segment: the segment a rank sends
/// at step k+1 is the one it received and summed at step k, so it goes out as soon as it has arrived. Float32 values go
/// out straight from the buffer, and all-gather's arrive straight into it; reduce-scatter's are summed from a segment
/// buffer. With <see cref="WirePrecision.Float16"/> each segment is scaled by a power of two and sent as half floats.
/// </summary>
sealed class RingAllReduce(int rank, int size, IRingLink? link, DataPlaneOptions options, RingIoThread sender, RingIoThread receiver) : IRingCollective
{
    public IRingLink? Link => link;

    public int Rank { get; } = rank;
    public int Size { get; } = size;
    long bytesSent;
    // Segment buffers of each half, made once per generation: all-reduces run one after the other.
    readonly Lazy<Half[]> sendHalves = new(() => new Half[options.SegmentFloats]), receiveHalves = new(() => new Half[options.SegmentFloats]);
    readonly Lazy<float[]> receiveSegment = new(() => new float[options.SegmentFloats]);

    /// <summary>Payload bytes this rank has written to the ring so far (without headers).</summary>
    public long BytesSent => Interlocked.Read(ref bytesSent);

    /// <summary>
    /// Replaces <paramref name="buffer"/> by the elementwise sum over all ranks (the caller divides), bit-identical on
    /// every rank. Every rank passes the same length, the same <paramref name="operationId"/> sequence and the same
    /// <paramref name="precision"/>. Fails with <see cref="AllReduceException"/>; a cancelled
    /// <paramref name="cancellationToken"/> throws OperationCanceledException. After either, the buffer holds partial
    /// sums and the ring must be configured anew.
    /// </summary>
    public Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default) =>
        RunAsync(buffer, operationId, precision, null, cancellationToken);

    /// <summary>The reduce-scatter alone: rank r ends with the sum of chunk r+1 (<see cref="RingPlan.Chunk"/> of N), the rest is partial.</summary>
    public Task ReduceScatterAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default) =>
        RunAsync(buffer, operationId, precision, RingPhase.ReduceScatter, cancellationToken);

    /// <summary>The all-gather alone: every rank gets chunk r+1 of rank r.</summary>
    public Task AllGatherAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default) =>
        RunAsync(buffer, operationId, precision, RingPhase.AllGather, cancellationToken);

    Task RunAsync(Memory<float> buffer, long operationId, WirePrecision precision, RingPhase? only, CancellationToken cancellationToken)
    {
        if (Size == 1) return Task.CompletedTask;
        if (link is null) return Task.FromException(new InvalidOperationException("a ring of several workers needs a link"));
        CancellationToken abort;
        try { abort = link.BeginOperation(); }
        catch (AllReduceException e) { return Task.FromException(e); }
        var run = new Run(this, link, buffer, operationId, precision, only, abort, cancellationToken);
        sender.Post(run.SendAll);
        receiver.Post(run.ReceiveAll);
        return run.Completion;
    }

    /// <summary>One all-reduce: its two halves, the watchdog that fails it when nothing moves, and its first failure.</summary>
    sealed class Run
    {
        readonly RingAllReduce ring;
        readonly IRingLink link;
        readonly Memory<float> buffer;
        readonly long operation;
        readonly WirePrecision precision;
        readonly RingPhase? only;
        readonly CancellationToken abort, caller;
        readonly CancellationTokenSource stop = new(); // ends waits of either half once the run fails
        readonly CancellationTokenRegistration callerRegistration;
        readonly Timer watchdog;
        readonly ReadySegments received = new(); // summed (or copied) and ready to forward
        readonly TaskCompletionSource done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        readonly object gate = new();
        int halvesLeft = 2, sent, receivedCount;
        (AllReduceFailure Reason, string What, Exception Cause)? failure;
        bool timedOut, callerCancelled, completed;

        public Run(RingAllReduce ring, IRingLink link, Memory<float> buffer, long operation, WirePrecision precision, RingPhase? only,
            CancellationToken abort, CancellationToken caller)
        {
            (this.ring, this.link, this.buffer, this.operation, this.precision, this.only, this.abort, this.caller) =
                (ring, link, buffer, operation, precision, only, abort, caller);
            watchdog = new Timer(_ => Fail(new TimeoutException(), timeout: true), null, ring.ProgressTimeout, Timeout.InfiniteTimeSpan);
            callerRegistration = caller.Register(() => Fail(new OperationCanceledException(caller), cancelled: true));
        }

        public Task Completion => done.Task;

        public void SendAll() => Half(() =>
        {
            bool half = precision == WirePrecision.Float16;
            var halves = half ? ring.sendHalves.Value : null;
            var first = (Phase: only ?? RingPhase.ReduceScatter, Step: 0);
            foreach (var slice in RingPlan.Sends(ring.Rank, ring.Size, buffer.Length, ring.SegmentFloats, only))
            {
                // From the second step on, each slice is one the left neighbour delivered at the previous step.
                if ((slice.Phase, slice.Step) != first) received.Take();
                var values = buffer.Span.Slice(slice.Offset, slice.Length);
                if (half)
                {
                    // The chunk's owner keeps what the others will receive; later steps forward values a half already holds exactly.
                    if (slice is { Phase: RingPhase.AllGather, Step: 0 }) FloatPayload.RoundThroughHalf(values);
                    int exponent = FloatPayload.HalfExponent(values);
                    FloatPayload.ToHalf(values, exponent, halves);
                    Send(RingFrame.Of(operation, slice, precision, exponent), MemoryMarshal.AsBytes(halves.AsSpan(0, slice.Length)));
                }
                else Send(RingFrame.Of(operation, slice, precision), MemoryMarshal.AsBytes(values));
            }
            link.AwaitPayloadsRead(); // a failed run ends the generation, which ends this wait
        });

        void Send(in RingFrame frame, ReadOnlySpan<byte> payload)
        {
            link.Send(frame, payload, stop.Token);
            Interlocked.Add(ref ring.bytesSent, payload.Length);
            Interlocked.Increment(ref sent);
            Moved();
        }

        public void ReceiveAll() => Half(() =>
        {
            bool half = precision == WirePrecision.Float16;
            var halves = half ? ring.receiveHalves.Value : null;
            var segment = ring.receiveSegment.Value; // reduce-scatter's values before they are added
            foreach (var slice in RingPlan.Receives(ring.Rank, ring.Size, buffer.Length, ring.SegmentFloats, only))
            {
                var frame = link.ReceiveFrame(stop.Token);
                if (!frame.Carries(operation, slice, precision))
                    throw new AllReduceException(AllReduceFailure.Mismatch,
                        $"rank {ring.Rank} expected all-reduce {operation} {slice} as {precision} from {link.Left}, got {frame}: "
                        + "do all ranks run the same all-reduces on buffers of the same length?");
                var target = buffer.Span.Slice(slice.Offset, slice.Length);
                bool reduce = slice.Phase == RingPhase.ReduceScatter;
                if (half)
                {
                    var values = reduce ? segment.AsSpan(0, slice.Length) : target;
                    link.ReceivePayload(MemoryMarshal.AsBytes(halves.AsSpan(0, slice.Length)), stop.Token);
                    FloatPayload.FromHalf(halves.AsSpan(0, slice.Length), frame.HalfExponent, values);
                    if (reduce) FloatPayload.AddTo(values, target);
                }
                else if (reduce) link.ReceiveAdding(target, segment, stop.Token);
                else link.ReceivePayload(MemoryMarshal.AsBytes(target), stop.Token);
                Interlocked.Increment(ref receivedCount);
                Moved();
                received.Add();
            }
        });

        void Moved() => watchdog.Change(ring.ProgressTimeout, Timeout.InfiniteTimeSpan);

        void Half(Action body)
        {
            try { body(); }
            catch (Exception e) { Fail(e); }
            if (Interlocked.Decrement(ref halvesLeft) == 0) Complete();
        }

        /// <summary>The first failure decides the reason; it ends the generation so the other half's blocked calls return.</summary>
        void Fail(Exception e, bool timeout = false, bool cancelled = false)
        {
            lock (gate)
            {
                if (failure is not null || completed) return; // a late timer or cancellation changes nothing
                timedOut |= timeout;
                callerCancelled |= cancelled;
                // Checked in this order: a connection cut on purpose breaks with an error of its own.
                failure = callerCancelled ? (AllReduceFailure.Aborted, "the caller cancelled", e)
                    : abort.IsCancellationRequested ? (AllReduceFailure.Aborted, "the ring was aborted", e)
                    : timedOut ? (AllReduceFailure.Timeout, $"no frame moved for {ring.ProgressTimeout.TotalSeconds:0.#} s", e)
                    : e is AllReduceException known ? (known.Reason, known.Detail, e)
                    : (AllReduceFailure.StreamBroken, e.Message, e);
                link.Cut($"all-reduce {operation} failed");
                stop.Cancel();
                received.Stop();
            }
        }

        void Complete()
        {
            lock (gate) completed = true;
            watchdog.Dispose();
            callerRegistration.Dispose();
            link.EndOperation(failure is null);
            stop.Dispose();
            if (failure is not var (reason, what, cause)) done.SetResult();
            else if (caller.IsCancellationRequested) done.SetCanceled(caller);
            else
                done.SetException(new AllReduceException(reason,
                    $"rank {ring.Rank}, all-reduce {operation}, generation {link.Generation}: {what}; "
                    + $"{Volatile.Read(ref receivedCount)} frames received from {link.Left}, {Volatile.Read(ref sent)} sent to {link.Right}", cause));
        }
    }

    TimeSpan ProgressTimeout => options.ProgressTimeout;

    int SegmentFloats => options.SegmentFloats;
}
