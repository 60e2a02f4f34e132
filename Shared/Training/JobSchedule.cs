using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Where a distributed job must stop its workers (DESIGN.md §2): after an epoch (evaluation, checkpoint), after a
/// periodic checkpoint, before a step whose condensing stage differs from the previous step's, and at the end.
/// Between two boundaries workers run on their own. Pure: no actors, no tensors.
/// </summary>
public sealed record JobSchedule(MicroBatchPlan Plan, int CondenseFactor, int CheckpointEverySteps, long LastStep, double CheckpointEveryMinutes = 0)
{
    /// <summary>The schedule of a job with <paramref name="options"/> run under <paramref name="run"/> (which may stop it early).</summary>
    public static JobSchedule For(TrainingOptions options, RunSettings run, MicroBatchPlan plan) =>
        new(plan, options.Model.CondenseFactor, options.CheckpointEverySteps, Math.Min(plan.TotalSteps, run.StopAfterStep ?? plan.TotalSteps),
            options.CheckpointEveryMinutes);

    /// <summary>
    /// Is a timed checkpoint (--checkpoint-every-minutes) due at the next step boundary, <paramref name="sinceLast"/>
    /// after the last checkpoint (or the run's start)? Wall time decides only when, never what the weights become.
    /// </summary>
    public bool TimedCheckpointDue(TimeSpan sinceLast) => CheckpointEveryMinutes > 0 && sinceLast.TotalMinutes >= CheckpointEveryMinutes;

    /// <summary>The schedule's condensing stage for global step <paramref name="step"/>.</summary>
    public int StageOf(long step) => CondensingSchedule.StageAt(CondensingSchedule.Progress(step, Plan.TotalSteps), CondenseFactor);

    /// <summary>After <paramref name="done"/> steps, is an epoch complete (evaluate)?</summary>
    public bool EpochEndsAt(long done) => done > 0 && done % Plan.StepsPerEpoch == 0;

    /// <summary>After <paramref name="done"/> steps, is a checkpoint due (epoch end, periodic, or the last step)?</summary>
    public bool CheckpointAt(long done) =>
        EpochEndsAt(done) || (CheckpointEverySteps > 0 && done % CheckpointEverySteps == 0) || done == LastStep;

    /// <summary>
    /// Are <paramref name="masks"/> behind the schedule at step <paramref name="at"/>, i.e. must they condense before it
    /// runs? The one rule: some layer has a next stage (<see cref="CondensingSchedule.NextStage"/>, which also says where
    /// each layer moves in <see cref="ModelCondensing.Decide"/>).
    /// </summary>
    public bool MasksBehind(IReadOnlyList<LayerMask> masks, long at) => masks.Any(m => Behind(m.Stage, at));

    /// <summary>
    /// Does a segment end before step <paramref name="step"/> for condensing? Masks that followed the schedule up to the
    /// step before are behind at it (<see cref="MasksBehind"/>'s rule on the schedule's own stage); nothing runs after the last step.
    /// </summary>
    public bool CondensesBefore(long step) => step > 0 && step < LastStep && Behind(StageOf(step - 1), step);

    bool Behind(int stage, long at) =>
        CondensingSchedule.NextStage(stage, CondensingSchedule.Progress(at, Plan.TotalSteps), CondenseFactor) is not null;

    /// <summary>
    /// What happens at step <paramref name="at"/>, in order, for a run that started at <paramref name="first"/>: the
    /// epoch's evaluation and checkpoint (not again at the step a run resumed from, unless it is the last), a requested
    /// checkpoint, then the end, or condensing when the masks are behind and the segment of steps from here.
    /// </summary>
    public IReadOnlyList<JobBoundary> BoundariesAt(long at, long first, bool masksBehind, bool checkpointRequested)
    {
        var boundaries = new List<JobBoundary>();
        if (at > first || at == LastStep)
        {
            if (EpochEndsAt(at)) boundaries.Add(JobBoundary.Evaluate);
            if (CheckpointAt(at) && at < LastStep) boundaries.Add(JobBoundary.Checkpoint);
        }
        if (checkpointRequested && at < LastStep && !boundaries.Contains(JobBoundary.Checkpoint)) boundaries.Add(JobBoundary.Checkpoint);
        if (at == LastStep) boundaries.Add(JobBoundary.Finish);
        else
        {
            if (masksBehind) boundaries.Add(JobBoundary.Condense);
            boundaries.Add(JobBoundary.Run);
        }
        return boundaries;
    }

    /// <summary>The first boundary after <paramref name="from"/>: the end of the segment of steps that starts there.</summary>
    public long NextBoundary(long from)
    {
        if (from >= LastStep) throw new ArgumentOutOfRangeException(nameof(from), $"step {from} is not before the last step {LastStep}");
        long to = from + 1;
        while (to < LastStep && !CheckpointAt(to) && !CondensesBefore(to)) to++;
        return to;
    }
}
