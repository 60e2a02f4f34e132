using System.Buffers;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Sums a step's gradients across the ring while backward is still running, as PyTorch DDP does with its buckets:
/// each bucket (<see cref="GradientBuckets.Plan"/>) is packed to its kept values and sent as soon as backward has
/// finished it, while backward goes on with the layers before it. The buckets cross the ring one after the other in
/// plan order, the same on every worker. <see cref="Finish"/> waits for the last and writes the sums back, already
/// divided by M. Packing reads the gradient buffer in one pass per bucket, unpacking writes it in one: in place on
/// the CPU, through one device-to-host and one host-to-device copy per bucket elsewhere.
/// </summary>
public sealed class GradientSync : IDisposable
{
    /// <summary>The packed buffer's first value: how many replicas vote to stop after this step. It travels with the bucket sent last.</summary>
    const int StopVotes = 0;
    /// <summary>Where the buckets' kept values start in the packed buffer.</summary>
    const int Values = 1;

    readonly Tensor flat;
    readonly bool inPlace;     // the buffer is contiguous float32 on the CPU: packed from and unpacked into its memory
    readonly GradientBucket[] buckets;
    readonly float scale;
    readonly IMemoryOwner<float> packedBuffer;
    readonly Func<Memory<float>, Task> allReduce;
    int started;
    Task sending = Task.CompletedTask;

    /// <param name="flat">the gradient buffer (<see cref="GradientBuffer.Flat"/>), on any device</param>
    /// <param name="scale">what the sums are multiplied by on the way back: 1/M</param>
    /// <param name="allReduce">sums one packed bucket in place across the ring</param>
    /// <param name="createBuffer">makes the packed buffer of the given length (<see cref="IAllReduce.CreateBuffer"/>: where the ring reads it best); on the heap by default</param>
    public GradientSync(Tensor flat, GradientBucket[] buckets, float scale, Func<Memory<float>, Task> allReduce, Func<int, IMemoryOwner<float>>? createBuffer = null)
    {
        (this.flat, this.buckets, this.scale, this.allReduce) = (flat, buckets, scale, allReduce);
        inPlace = TensorSpans.FitsCpuKernel(flat);
        int length = checked((int)(Values + buckets.Sum(b => b.CompactLength)));
        packedBuffer = createBuffer?.Invoke(length) ?? new FloatArray(length);
    }

    Memory<float> Packed => packedBuffer.Memory;

    /// <summary>Values that cross the ring per step, the stop votes included.</summary>
    public long PackedLength => Packed.Length;

    /// <summary>Starts a step; the previous one must have finished.</summary>
    public void BeginStep() => (started, sending) = (0, Task.CompletedTask);

    /// <summary>Called as backward goes: the gradients from <paramref name="flatOffset"/> to the end are final.</summary>
    public void FinalFrom(long flatOffset)
    {
        // The first bucket of the buffer waits for Finish: it carries the stop votes.
        while (started < buckets.Length - 1 && buckets[started].FlatStart >= flatOffset) Start(buckets[started++], withVotes: false);
    }

    /// <summary>
    /// Sends what is left, waits for every bucket and writes the sums, times the scale, into the gradient buffer;
    /// returns whether any replica voted to stop after this step (every replica gets the same answer).
    /// </summary>
    public bool Finish(bool stopAfterThisStep)
    {
        Packed.Span[StopVotes] = stopAfterThisStep ? 1 : 0;
        while (started < buckets.Length) Start(buckets[started], withVotes: ++started == buckets.Length);
        sending.GetAwaiter().GetResult();
        var compact = Packed.Span[Values..];
        if (inPlace)
        {
            var gradients = TensorSpans.Floats(flat);
            foreach (var bucket in buckets) GradientBuckets.Unpack(compact, bucket, gradients, 0, scale);
        }
        else
            foreach (var bucket in buckets)
            {
                var host = new float[bucket.FlatEnd - bucket.FlatStart];
                GradientBuckets.Unpack(compact, bucket, host, bucket.FlatStart, scale);
                using var _ = torch.no_grad();
                using var staged = torch.tensor(host);
                using var range = flat.narrow(0, bucket.FlatStart, host.Length);
                range.copy_(staged);
            }
        return Packed.Span[StopVotes] > 0;
    }

    void Start(GradientBucket bucket, bool withVotes)
    {
        var compact = Packed.Span[Values..];
        if (inPlace) GradientBuckets.Pack(TensorSpans.Floats(flat), 0, bucket, compact);
        else
        {
            using var range = flat.narrow(0, bucket.FlatStart, bucket.FlatEnd - bucket.FlatStart);
            using var host = range.cpu();
            GradientBuckets.Pack(TensorSpans.Floats(host), bucket.FlatStart, bucket, compact);
        }
        // The bucket sent last starts the buffer (CompactStart 0), so with the votes before it, it is one range.
        var values = withVotes ? Packed[..(Values + (int)bucket.CompactLength)] : Packed.Slice(Values + (int)bucket.CompactStart, (int)bucket.CompactLength);
        if (values.Length > 0) sending = After(sending, values);
    }

    /// <summary>Frees the packed buffer once no bucket is crossing the ring any more (a step cut short may leave some running until the ring fails them).</summary>
    public void Dispose() => sending.ContinueWith(_ => packedBuffer.Dispose(), TaskScheduler.Default);

    async Task After(Task previous, Memory<float> values)
    {
        await previous;
        await allReduce(values);
    }
}
