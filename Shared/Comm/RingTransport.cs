using System.Globalization;
using System.Threading.Channels;
using CondenseCluster.Shared.Comm.Wire;
using Grpc.Core;
using Grpc.Net.Client;

namespace CondenseCluster.Shared.Comm;

/// <summary>A ring member as the messages name it.</summary>
public readonly record struct RingNeighbour(int Rank, string Endpoint)
{
    public override string ToString() => $"rank {Rank} ({Endpoint})";
}

/// <summary>
/// One ring generation as one worker sees it: a long-lived client stream to the right neighbour, reused by every
/// all-reduce, and the queue of messages from the left one. A failed or aborted all-reduce ends the generation (a stream
/// cut mid-message cannot be resumed). When the left neighbour's stream ends, this worker ends its own stream too, once
/// no all-reduce is running, so a failure travels round the whole ring at once instead of waiting for timeouts.
/// </summary>
public sealed class RingTransport
{
    readonly object gate = new();
    readonly GrpcChannel channel;
    readonly AsyncClientStreamingCall<RingFrame, PushReply> call;
    readonly ChannelReader<RingFrame> incoming;
    readonly CancellationTokenSource aborted = new();
    readonly TimeSpan closeTimeout;
    bool busy, leftEnded, closing, anySent;
    (AllReduceFailure Reason, string Why)? ended; // why no further all-reduce can run
    Task closed = Task.CompletedTask;

    internal RingTransport(long generation, RingNeighbour left, RingNeighbour right, RingInbox inbox, TimeSpan closeTimeout)
    {
        Generation = generation;
        Left = left;
        Right = right;
        this.closeTimeout = closeTimeout;
        channel = GrpcChannel.ForAddress(right.Endpoint);
        call = channel.CreateCallInvoker().AsyncClientStreamingCall(RingWire.Push, null, new CallOptions(new Metadata
        {
            { RingPeerService.GenerationHeader, generation.ToString(CultureInfo.InvariantCulture) },
        }));
        incoming = inbox.Open(generation, OnLeftEnded); // last: it may call back at once
    }

    public long Generation { get; }
    public RingNeighbour Left { get; }
    public RingNeighbour Right { get; }

    internal CallInvoker Invoker => channel.CreateCallInvoker();

    /// <summary>Completes once the outgoing stream is closed and its connection released.</summary>
    internal Task Closed { get { lock (gate) return closed; } }

    /// <summary>Claims the generation for one all-reduce; the token is cancelled by <see cref="Abort"/>.</summary>
    internal CancellationToken BeginOperation()
    {
        lock (gate)
        {
            if (ended is var (reason, why)) throw new AllReduceException(reason, $"ring generation {Generation} has ended ({why}); configure a new ring");
            if (busy) throw new InvalidOperationException("an all-reduce is already running on this ring");
            busy = true;
            return aborted.Token;
        }
    }

    internal void EndOperation(bool succeeded)
    {
        lock (gate)
        {
            busy = false;
            if (!succeeded) Stop("an all-reduce failed on this generation", cancelOperation: false);
            else if (leftEnded) CloseGracefully();
        }
    }

    /// <summary>Ends the generation at once: an all-reduce in flight fails with <see cref="AllReduceFailure.Aborted"/>.</summary>
    public void Abort(string why)
    {
        lock (gate) Stop(why, cancelOperation: true);
    }

    /// <summary>The generation is over: lets the right neighbour read what was sent, unless an all-reduce must be cut.</summary>
    internal void Retire(string why)
    {
        lock (gate)
        {
            if (busy) Stop(why, cancelOperation: true);
            ended ??= (AllReduceFailure.Aborted, why);
            CloseGracefully();
        }
    }

    internal async ValueTask SendAsync(RingFrame message, CancellationToken cancellationToken)
    {
        try
        {
            await call.RequestStream.WriteAsync(message, cancellationToken);
            anySent = true;
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            var reason = !anySent && e is RpcException { StatusCode: StatusCode.Unavailable }
                ? AllReduceFailure.PeerUnreachable : AllReduceFailure.StreamBroken;
            throw new AllReduceException(reason, $"sending to {Right}: {(e as RpcException)?.Status.Detail ?? e.Message}", e);
        }
    }

    /// <summary>The next message from the left neighbour; the caller releases it once it has read the payload.</summary>
    internal async ValueTask<RingFrame> ReceiveAsync(CancellationToken cancellationToken)
    {
        try { return await incoming.ReadAsync(cancellationToken); }
        catch (ChannelClosedException e)
        {
            throw new AllReduceException(AllReduceFailure.StreamBroken, $"receiving from {Left}: {e.InnerException?.Message ?? "the stream ended"}", e);
        }
    }

    void OnLeftEnded(Exception reason)
    {
        lock (gate)
        {
            leftEnded = true;
            ended ??= (AllReduceFailure.StreamBroken, $"{Left}: {reason.Message}");
            if (!busy) CloseGracefully();
        }
    }

    // Callers hold the gate.
    void Stop(string why, bool cancelOperation)
    {
        ended ??= (AllReduceFailure.Aborted, why);
        if (cancelOperation) aborted.Cancel();
        closing = true;
        call.Dispose(); // resets the stream: the right neighbour sees it break now
        channel.Dispose();
    }

    void CloseGracefully()
    {
        if (closing) return;
        closing = true;
        closed = Task.Run(async () =>
        {
            try
            {
                await call.RequestStream.CompleteAsync();
                // Resetting the stream before the server has read it all would drop what it still buffers.
                await call.ResponseAsync.WaitAsync(closeTimeout, aborted.Token);
            }
            catch (Exception) { } // the right neighbour is gone, slow or cut off: nothing left to hand it
            finally
            {
                call.Dispose();
                channel.Dispose();
            }
        });
    }
}
