using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Training;
using Xunit;

namespace CondenseCluster.Tests.Cluster;

public class JobScheduleTests
{
    // 2 epochs of 10 steps; C = 4: stages start at progress 1/6, 2/6, 3/6, i.e. before steps 4, 7 and 10.
    static readonly JobSchedule Schedule = new(new MicroBatchPlan(64, 2, 640, 2), CondenseFactor: 4, CheckpointEverySteps: 0, LastStep: 20);

    [Fact]
    public void SegmentsEndAtEveryCondensingStageEpochEndAndTheLastStep()
    {
        var ends = new List<long>();
        for (long from = 0; from < Schedule.LastStep; from = ends[^1]) ends.Add(Schedule.NextBoundary(from));
        Assert.Equal([4, 7, 10, 20], ends);
        Assert.Equal([4L, 7, 10], Enumerable.Range(1, 19).Where(s => Schedule.CondensesBefore(s)).Select(s => (long)s));
        Assert.True(Schedule.EpochEndsAt(10));
        Assert.False(Schedule.CondensesBefore(20)); // nothing runs after the last step
    }

    [Fact]
    public void PeriodicCheckpointsAndAnEarlyStopAreBoundariesToo()
    {
        var schedule = Schedule with { CheckpointEverySteps = 3, LastStep = 8 };
        var ends = new List<long>();
        for (long from = 0; from < schedule.LastStep; from = ends[^1]) ends.Add(schedule.NextBoundary(from));
        Assert.Equal([3, 4, 6, 7, 8], ends);
        Assert.True(schedule.CheckpointAt(8));
    }

    [Fact]
    public void ATimedCheckpointIsDueOnceItsMinutesHavePassedSinceTheLastOne()
    {
        var every90Seconds = Schedule with { CheckpointEveryMinutes = 1.5 };
        Assert.False(every90Seconds.TimedCheckpointDue(TimeSpan.FromSeconds(89.9)));
        Assert.True(every90Seconds.TimedCheckpointDue(TimeSpan.FromSeconds(90)));
        Assert.True(every90Seconds.TimedCheckpointDue(TimeSpan.FromHours(3)));
        Assert.False(Schedule.TimedCheckpointDue(TimeSpan.FromDays(30))); // 0 minutes: none
        // From the job's options, like the other checkpoint settings.
        var options = LocalTrainingTests.Tiny() with { CheckpointEveryMinutes = 20 };
        var schedule = JobSchedule.For(options, new RunSettings { Device = TorchSharp.torch.CPU, OutputFolder = "." }, Schedule.Plan);
        Assert.Equal(20, schedule.CheckpointEveryMinutes);
    }

    [Theory]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void ANegativeOrNonFiniteCheckpointIntervalInMinutesIsNamed(double minutes)
    {
        var error = Assert.Throws<ArgumentException>(() => (LocalTrainingTests.Tiny() with { CheckpointEveryMinutes = minutes }).Validate());
        Assert.StartsWith($"--checkpoint-every-minutes {minutes} must be a finite number of minutes", error.Message);
    }

    [Fact]
    public void TheScheduleStagesAreTheSingleNodeOnes()
    {
        for (long step = 0; step < 20; step++)
            Assert.Equal(CondensingSchedule.StageAt(step / 20.0, 4), Schedule.StageOf(step));
    }

    /// <summary>Masks of one layer [G = 2, in = 8] at <paramref name="stage"/>: each group keeps 8 - 2·stage columns.</summary>
    static IReadOnlyList<LayerMask> MasksAt(int stage)
    {
        var kept = new bool[2, 8];
        for (int g = 0; g < 2; g++)
            for (int j = 0; j < 8 - 2 * stage; j++) kept[g, j] = true;
        return [new LayerMask(stage, kept)];
    }

    /// <summary>What the coordinator does at each boundary of a run from <paramref name="first"/>, condensing as the schedule asks.</summary>
    static List<(long At, IReadOnlyList<JobBoundary> Boundaries)> Walk(JobSchedule schedule, long first, IReadOnlyList<LayerMask> masks)
    {
        var walk = new List<(long, IReadOnlyList<JobBoundary>)>();
        for (long at = first; ; at = schedule.NextBoundary(at))
        {
            var boundaries = schedule.BoundariesAt(at, first, schedule.MasksBehind(masks, at), checkpointRequested: false);
            walk.Add((at, boundaries));
            if (boundaries.Contains(JobBoundary.Condense))
            {
                masks = ModelCondensing.Decide(masks, CondensingSchedule.Progress(at, schedule.Plan.TotalSteps), schedule.CondenseFactor, _ => new float[2, 8]).Masks;
                Assert.False(schedule.MasksBehind(masks, at)); // condensing catches up with the schedule in one move
            }
            if (at == schedule.LastStep) return walk;
        }
    }

    [Fact]
    public void AWholeRunCondensesAtEachStageEvaluatesAndCheckpointsEachEpochAndFinishes()
    {
        var walk = Walk(Schedule, first: 0, MasksAt(0));
        Assert.Equal([0L, 4, 7, 10, 20], walk.Select(w => w.At));
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Run], walk[0].Boundaries);
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Condense, JobBoundary.Run], walk[1].Boundaries);
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Condense, JobBoundary.Run], walk[2].Boundaries);
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Evaluate, JobBoundary.Checkpoint, JobBoundary.Condense, JobBoundary.Run], walk[3].Boundaries);
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Evaluate, JobBoundary.Finish], walk[4].Boundaries);
    }

    [Fact]
    public void AResumedRunDoesNotRedoItsFirstBoundaryButCondensesIfItsMasksAreBehind()
    {
        // The checkpoint of step 10 was written before condensing to stage 3.
        var walk = Walk(Schedule, first: 10, MasksAt(2));
        Assert.Equal([10L, 20], walk.Select(w => w.At));
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Condense, JobBoundary.Run], walk[0].Boundaries);
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Run], Schedule.BoundariesAt(10, 10, masksBehind: false, checkpointRequested: false));
        // A run resumed at its last step still evaluates and finishes.
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Evaluate, JobBoundary.Finish], Schedule.BoundariesAt(20, 20, masksBehind: false, checkpointRequested: false));
    }

    [Fact]
    public void ARequestedCheckpointIsWrittenOnceAndNeverAtTheEnd()
    {
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Checkpoint, JobBoundary.Run], Schedule.BoundariesAt(5, 0, masksBehind: false, checkpointRequested: true));
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Checkpoint, JobBoundary.Condense, JobBoundary.Run], Schedule.BoundariesAt(0, 0, masksBehind: true, checkpointRequested: true));
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Evaluate, JobBoundary.Checkpoint, JobBoundary.Run], Schedule.BoundariesAt(10, 0, masksBehind: false, checkpointRequested: true));
        Assert.Equal<IEnumerable<JobBoundary>>([JobBoundary.Evaluate, JobBoundary.Finish], Schedule.BoundariesAt(20, 0, masksBehind: false, checkpointRequested: true));
    }

    [Fact]
    public void MasksThatFollowedTheScheduleAreBehindExactlyWhereSegmentsEndForCondensing()
    {
        for (long step = 0; step < Schedule.LastStep; step++)
        {
            Assert.False(Schedule.MasksBehind(MasksAt(Schedule.StageOf(step)), step));
            if (step > 0) Assert.Equal(Schedule.CondensesBefore(step), Schedule.MasksBehind(MasksAt(Schedule.StageOf(step - 1)), step));
        }
        Assert.False(Schedule.MasksBehind(MasksAt(0), 0)); // progress 0 never condenses
        Assert.True(Schedule.MasksBehind([.. MasksAt(3), .. MasksAt(1)], 15)); // any layer behind is enough
        Assert.False(Schedule.MasksBehind(MasksAt(3), 19));
    }
}
