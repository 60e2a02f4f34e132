using System.Diagnostics;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>How a step's gradients cross the ring: buckets of <paramref name="BucketFloats"/> values, only the entries the masks keep unless <paramref name="SendMaskedGradients"/>, as <paramref name="Precision"/>.</summary>
public sealed record GradientExchange(long BucketFloats, bool SendMaskedGradients, WirePrecision Precision);

/// <summary>What one step did on this replica, and where its time went (milliseconds); <paramref name="UpdateSkipped"/>: its gradient was not finite.</summary>
public readonly record struct StepOutcome(MicroBatchResult Total, double ComputeMs, double ExchangeWaitMs, double DataWaitMs, bool Stop, bool UpdateSkipped);

/// <summary>
/// One replica's part in a synchronous data-parallel job (DESIGN.md §2), whoever drives it: the single-process job
/// (a ring of one, <see cref="SingleRank"/>) and every worker run their steps through it. A step accumulates this
/// rank's micro-batches of the fixed plan, sums the gradients over the ring in buckets while backward runs, and
/// applies the same update as every other rank. It also averages what replicas must agree on: the condensing
/// importance and the BatchNorm statistics. Every rank of a ring makes the same all-reduces in the same order, so
/// their operation ids line up; make a new one for every new ring.
/// </summary>
public sealed class DistributedStep : IDisposable
{
    readonly TrainingEngine engine;
    readonly MicroBatchPlan plan;
    readonly IAllReduce ring;
    readonly GradientExchange exchange;
    readonly int[] microBatches;
    long operation;              // all-reduce sequence number, the same on every rank of the ring
    GradientSync? sync;          // planned for the current masks
    long exchangeStep;
    int bucketsSent;             // of the step being exchanged
    long batchNormAveragedAt = -1;

    public DistributedStep(TrainingEngine engine, MicroBatchPlan plan, IAllReduce ring, GradientExchange exchange)
    {
        (this.engine, this.plan, this.ring, this.exchange) = (engine, plan, ring, exchange);
        microBatches = [.. plan.MicroBatchesOf(ring.Rank, ring.Size)];
    }

    /// <summary>The micro-batches of every step this rank computes.</summary>
    public IReadOnlyList<int> MicroBatches => microBatches;

    /// <summary>Called after the gradients of a step are computed, before they are summed (fault injection).</summary>
    public Action<long>? Computed { get; init; }

    /// <summary>Called when a step's second bucket goes out: the first has crossed the ring (fault injection).</summary>
    public Action<long>? Exchanging { get; init; }

    /// <summary>
    /// Runs global step <paramref name="step"/>: this rank's micro-batches, taken in order from <paramref name="batches"/>,
    /// the exchange, and the update at <paramref name="learningRate"/>. <see cref="StepOutcome.Stop"/> is true on every
    /// rank when any rank asked to <paramref name="stopAfterThisStep"/>. It is asked when this rank casts its vote, after
    /// its micro-batches are computed, so that a request that arrives during the compute still ends the step in flight.
    /// </summary>
    public StepOutcome Run(long step, BatchPrefetcher batches, IImageDataset data, double learningRate, Func<bool>? stopAfterThisStep = null)
    {
        var clock = Stopwatch.StartNew();
        engine.BeginStep();
        var exchanging = ring.Size > 1 ? BeginExchange(step) : null;
        var (total, dataWait) = engine.AccumulateAll(step, plan, microBatches, batches, data, exchanging is null ? null : exchanging.FinalFrom);
        double computed = clock.Elapsed.TotalMilliseconds;
        Computed?.Invoke(step);
        // The exchanged sums come back divided by M; a ring of one divides its own.
        bool vote = stopAfterThisStep?.Invoke() ?? false;
        bool stop = exchanging?.Finish(vote) ?? vote;
        double exchanged = clock.Elapsed.TotalMilliseconds;
        bool updated = engine.ApplyUpdate(learningRate, gradientsAveraged: exchanging is not null);
        batchNormAveragedAt = -1;
        return new StepOutcome(total, computed - dataWait + (clock.Elapsed.TotalMilliseconds - exchanged), exchanged - computed, dataWait, stop, !updated);
    }

    /// <summary>The masks changed: the next step plans its buckets anew.</summary>
    public void MasksChanged() => ReplanExchange();

    /// <summary>The whole state was replaced (its masks and BatchNorm statistics too).</summary>
    public void StateLoaded()
    {
        ReplanExchange();
        batchNormAveragedAt = -1;
    }

    void ReplanExchange()
    {
        sync?.Dispose();
        sync = null;
    }

    /// <summary>Frees the exchange's buffer (a file in /dev/shm where the ring shares it) once no bucket crosses the ring.</summary>
    public void Dispose() => ReplanExchange();

    /// <summary>
    /// Starts step <paramref name="step"/>'s gradient exchange. The bucket plan is made again when the masks changed: a
    /// condensed layer's dropped weights have zero gradients on every worker, so only its kept entries are sent.
    /// </summary>
    GradientSync BeginExchange(long step)
    {
        if (sync is null)
        {
            var kept = exchange.SendMaskedGradients ? [new GradientRun(0, engine.Gradients.Length)] : GradientBuckets.KeptRuns(engine.GradientLayout());
            sync = new GradientSync(engine.Gradients.Flat, GradientBuckets.Plan(engine.ChainStepEnds(), kept, exchange.BucketFloats),
                (float)(1.0 / plan.MicroBatches), values =>
                {
                    var reducing = ring.AllReduceAsync(values, ++operation, exchange.Precision);
                    if (bucketsSent++ == 1) Exchanging?.Invoke(exchangeStep);
                    return reducing;
                }, ring.CreateBuffer);
        }
        (exchangeStep, bucketsSent) = (step, 0);
        sync.BeginStep();
        return sync;
    }

    /// <summary>Per-layer importance [G, in] averaged over the ring; every rank takes part and gets the same matrices.</summary>
    public float[][,] AverageImportance()
    {
        var importance = engine.Model.LearnedLayers.Select(l => l.Layer.Importance()).ToArray();
        var buffer = new float[importance.Sum(i => i.Length)];
        int offset = 0;
        foreach (var matrix in importance)
        {
            Buffer.BlockCopy(matrix, 0, buffer, offset * sizeof(float), Buffer.ByteLength(matrix));
            offset += matrix.Length;
        }
        AllReduce(buffer);
        foreach (ref float value in buffer.AsSpan()) value /= ring.Size;
        offset = 0;
        foreach (var matrix in importance)
        {
            Buffer.BlockCopy(buffer, offset * sizeof(float), matrix, 0, Buffer.ByteLength(matrix));
            offset += matrix.Length;
        }
        return importance;
    }

    /// <summary>
    /// Each replica updates its running statistics on its own micro-batches; before evaluation, checkpoints and export
    /// they are averaged over the replicas that compute micro-batches (with fewer micro-batches than workers, some
    /// see no data and hold only initial statistics). The weight average's statistics are averaged with them. Once per step, so two uses at one boundary average once.
    /// </summary>
    public void AverageBatchNorm(long step)
    {
        if (batchNormAveragedAt == step || ring.Size == 1) return;
        var statistics = WeightAverage.RunningStatistics(engine.Model).Concat(engine.Average is { } average ? WeightAverage.RunningStatistics(average.Model) : []).ToArray();
        long length = HostBuffer.Length(statistics);
        var buffer = new float[length + 1]; // the statistics, then how many replicas contributed them
        if (microBatches.Length > 0)
        {
            HostBuffer.Gather(statistics, buffer);
            buffer[length] = 1;
        }
        AllReduce(buffer);
        HostBuffer.Scatter(buffer, statistics, 1.0 / buffer[length]);
        batchNormAveragedAt = step;
    }

    void AllReduce(float[] buffer) => ring.AllReduceAsync(buffer, ++operation, WirePrecision.Float32).GetAwaiter().GetResult();
}
