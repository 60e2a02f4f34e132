using System.Buffers;

namespace CondenseCluster.Shared.Comm;

/// <summary>Sums buffers over the ranks of a job: the data plane's ring, or nothing to do in a single process.</summary>
public interface IAllReduce
{
    int Rank { get; }
    int Size { get; }

    /// <summary>
    /// Replaces <paramref name="buffer"/> by the elementwise sum over all ranks, bit-identical on every rank; every
    /// rank passes the same length, <paramref name="operationId"/> sequence and <paramref name="precision"/>.
    /// </summary>
    Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default);

    /// <summary>
    /// A buffer of <paramref name="length"/> zeros for all-reduces that run often: the ring may pass its segments to
    /// neighbours on the same host without copying them (<see cref="SharedFloatBuffer"/>). Any memory may be all-reduced.
    /// </summary>
    IMemoryOwner<float> CreateBuffer(int length) => new FloatArray(length);
}

/// <summary>A buffer on the managed heap.</summary>
public sealed class FloatArray(int length) : IMemoryOwner<float>
{
    public Memory<float> Memory { get; } = new float[length];

    public void Dispose() { }
}

/// <summary>A job of one rank: every sum is the buffer itself.</summary>
public sealed class SingleRank : IAllReduce
{
    public static readonly SingleRank Instance = new();

    public int Rank => 0;
    public int Size => 1;

    public Task AllReduceAsync(Memory<float> buffer, long operationId, WirePrecision precision, CancellationToken cancellationToken = default) =>
        Task.CompletedTask;
}
