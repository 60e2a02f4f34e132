using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Where a distributed job must stop its workers (DESIGN.md §2): after an epoch (evaluation, checkpoint), after a
/// periodic checkpoint, before a step whose condensing stage differs from the previous step's, and at the end.
/// Between two boundaries workers run on their own. Pure: no actors, no tensors.
/// </summary>
public sealed record JobSchedule(MicroBatchPlan Plan, int CondenseFactor, int CheckpointEverySteps, long LastStep)
{
    /// <summary>The schedule's condensing stage for global step <paramref name="step"/>.</summary>
    public int StageOf(long step) => CondensingSchedule.StageAt(CondensingSchedule.Progress(step, Plan.TotalSteps), CondenseFactor);

    /// <summary>After <paramref name="done"/> steps, is an epoch complete (evaluate)?</summary>
    public bool EpochEndsAt(long done) => done > 0 && done % Plan.StepsPerEpoch == 0;

    /// <summary>After <paramref name="done"/> steps, is a checkpoint due (epoch end, periodic, or the last step)?</summary>
    public bool CheckpointAt(long done) =>
        EpochEndsAt(done) || (CheckpointEverySteps > 0 && done % CheckpointEverySteps == 0) || done == LastStep;

    /// <summary>Must masks move before step <paramref name="step"/> runs? (as the single-node engine condenses at the step's start)</summary>
    public bool CondensesBefore(long step) => step > 0 && step < LastStep && StageOf(step) != StageOf(step - 1);

    /// <summary>The first boundary after <paramref name="from"/>: the end of the segment of steps that starts there.</summary>
    public long NextBoundary(long from)
    {
        if (from >= LastStep) throw new ArgumentOutOfRangeException(nameof(from), $"step {from} is not before the last step {LastStep}");
        long to = from + 1;
        while (to < LastStep && !CheckpointAt(to) && !CondensesBefore(to)) to++;
        return to;
    }
}
