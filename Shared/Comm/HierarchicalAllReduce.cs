namespace CondenseCluster.Shared.Comm;

/// <summary>What a node sums its buffers with: one ring, or the hierarchical form over two (<see cref="RingLayout"/>).</summary>
interface IRingCollective
{
    /// <summary>Payload bytes this rank has written to its rings so far.</summary>
    long BytesSent { get; }

    Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken);
}

/// <summary>
/// The hierarchical all-reduce (<see cref="RingLayout"/>): a reduce-scatter in the ring within the host, an
/// all-reduce of the chunk it leaves this rank in the ring across hosts, an all-gather within the host. A failure
/// in either ring ends both, so that the ranks waiting on this one in the other ring fail at once too.
/// </summary>
sealed class HierarchicalAllReduce(RingAllReduce host, RingAllReduce across, RingLayout layout) : IRingCollective
{
    public long BytesSent => host.BytesSent + across.BytesSent;

    public async Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken)
    {
        try
        {
            await host.ReduceScatterAsync(buffer, operationId, precision, cancellationToken);
            var (start, length) = layout.HostChunk(buffer.Length);
            await across.AllReduceAsync(buffer.Slice(start, length), operationId, precision, cancellationToken);
            await host.AllGatherAsync(buffer, operationId, precision, cancellationToken);
        }
        catch
        {
            host.Link?.Cut($"all-reduce {operationId} failed");
            across.Link?.Cut($"all-reduce {operationId} failed");
            throw;
        }
    }
}
