using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
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
    public void TheScheduleStagesAreTheSingleNodeOnes()
    {
        for (long step = 0; step < 20; step++)
            Assert.Equal(CondensingSchedule.StageAt(step / 20.0, 4), Schedule.StageOf(step));
    }
}
