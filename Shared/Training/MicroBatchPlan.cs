using CondenseCluster.Shared.Data;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// The fixed micro-batch plan (DESIGN.md §2): a global step of B samples is M micro-batches, consecutive runs of step
/// i's B positions [i·B, (i+1)·B) of the epoch's permutation: ⌊B/M⌋ samples each, one more for the first B mod M of
/// them. Micro-batch m is computed by live worker m mod N. M does not depend on N, so who computes a micro-batch
/// changes with membership but the math does not.
/// </summary>
public sealed record MicroBatchPlan(int BatchSize, int MicroBatches, int TrainCount, int Epochs)
{
    /// <summary>Samples in micro-batch <paramref name="microBatch"/>: ⌊B/M⌋, one more for the first B mod M.</summary>
    public int SizeOf(int microBatch) => BatchSize / MicroBatches + (microBatch < BatchSize % MicroBatches ? 1 : 0);

    /// <summary>Where micro-batch <paramref name="microBatch"/> starts among its step's B samples.</summary>
    public int StartOf(int microBatch) => microBatch * (BatchSize / MicroBatches) + Math.Min(microBatch, BatchSize % MicroBatches);

    /// <summary>
    /// What micro-batch <paramref name="microBatch"/>'s mean loss is multiplied by before backward, b_m·M/B: the step
    /// then divides the sum of its M gradients by M, which makes it the mean over all B samples whatever the sizes.
    /// Exactly 1 when B is a multiple of M, so that equal micro-batches compute what they always did.
    /// </summary>
    public double LossWeight(int microBatch) => (double)SizeOf(microBatch) * MicroBatches / BatchSize;

    /// <summary>Full global batches per epoch; the incomplete tail of the permutation is left out, as every step needs M equal micro-batches.</summary>
    public int StepsPerEpoch => TrainCount / BatchSize;

    public long TotalSteps => (long)StepsPerEpoch * Epochs;

    public int EpochOf(long step) => (int)(step / StepsPerEpoch);

    public int StepInEpoch(long step) => (int)(step % StepsPerEpoch);

    /// <summary>Throws a clear error when the plan cannot be carried out.</summary>
    public void Validate()
    {
        if (MicroBatches < 1) throw new ArgumentException($"--micro-batches {MicroBatches} must be at least 1");
        if (BatchSize < MicroBatches)
            throw new ArgumentException($"--batch-size {BatchSize} is smaller than --micro-batches {MicroBatches}: every micro-batch needs a sample; lower --micro-batches");
        if (Epochs < 1) throw new ArgumentException($"--epochs {Epochs} must be at least 1");
        if (StepsPerEpoch < 1)
            throw new ArgumentException($"the training set has {TrainCount} samples, fewer than one batch of {BatchSize}; lower --batch-size");
    }

    /// <summary>Dataset indices of micro-batch <paramref name="microBatch"/> of a step, given that epoch's permutation.</summary>
    public int[] Indices(int[] epochPermutation, long step, int microBatch)
    {
        int start = StepInEpoch(step) * BatchSize + StartOf(microBatch);
        return epochPermutation.AsSpan(start, SizeOf(microBatch)).ToArray();
    }

    /// <summary>The micro-batches of a step that worker <paramref name="rank"/> of <paramref name="workers"/> computes.</summary>
    public IEnumerable<int> MicroBatchesOf(int rank, int workers)
    {
        for (int m = rank; m < MicroBatches; m += workers) yield return m;
    }

    /// <summary>
    /// The batch requests of the micro-batches worker <paramref name="rank"/> of <paramref name="workers"/> computes in
    /// steps [first, last), in order; each epoch's permutation is made once.
    /// </summary>
    public IEnumerable<BatchRequest> Requests(long first, long last, int seed, int rank = 0, int workers = 1)
    {
        int epoch = -1;
        int[] order = [];
        for (long step = first; step < last; step++)
        {
            if (EpochOf(step) != epoch)
            {
                epoch = EpochOf(step);
                order = SampleOrder.Permutation(TrainCount, seed, epoch);
            }
            foreach (int m in MicroBatchesOf(rank, workers))
                yield return new BatchRequest(Indices(order, step, m), epoch, Augment: true);
        }
    }
}
