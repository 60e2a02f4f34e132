using CondenseCluster.Coordinator.Control;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Control;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using Xunit;

namespace CondenseCluster.Tests.Control;

/// <summary>The control plane's view of a job, fed observer calls directly.</summary>
public class JobMonitorTests
{
    readonly JobMonitor monitor = new();

    void Run(int steps)
    {
        monitor.JobAccepted("tiny", "/runs/a");
        monitor.Started(new RunStarted("tiny", 0, 100, 50, 2, 64, 2, "2 workers", 1, "glibc", "/runs/a"));
        for (int s = 0; s < steps; s++)
            monitor.Step(new StepMetrics(s, 0, 2.0 - s * 0.01, 0.1, 0.1, 0, 3, 640, 100, 90, 1));
    }

    [Fact]
    public async Task AWatcherGetsWhatWasKeptAfterItsSequenceAndThenEveryNewUpdateInOrder()
    {
        Run(3);
        long seen = monitor.Snapshot().Sequence;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var updates = new List<JobUpdate>();
        var watching = Task.Run(async () =>
        {
            await foreach (var update in monitor.Watch(seen - 2, stop.Token))
            {
                updates.Add(update);
                if (update.Status?.State == "completed") return;
            }
        });
        monitor.Event(new Notice("condensing before step 3", EventKind.Condensing));
        monitor.Step(new StepMetrics(3, 0, 1.9, 0.2, 0.1, 1, 3, 640, 100, 90, 1));
        monitor.JobEnded(JobEnd.Completed, "the job completed");
        await watching;

        Assert.Equal(Enumerable.Range(0, updates.Count).Select(i => seen - 1 + i), updates.Select(u => u.Sequence));
        Assert.Equal("condensing", updates.Single(u => u.Event is not null).Event.Kind);
        Assert.Equal(3, updates.Single(u => u.Step is not null && u.Sequence > seen).Step.Step);
        Assert.Equal("the job completed", updates[^1].Status.Reason);
    }

    [Fact]
    public void TheStatusFollowsTheStepsWithAnEtaFromTheirPaceAndTheMasksSparsity()
    {
        Run(10);
        var masks = new[] { new LayerMask(1, new bool[4, 8]), new LayerMask(1, new bool[4, 8]) };
        for (int g = 0; g < 4; g++) for (int i = 0; i < 6; i++) masks[0].Kept[g, i] = masks[1].Kept[g, i] = true;
        monitor.Masks(1, 10, masks);
        var status = monitor.Status();
        Assert.Equal(("running", 10L, 100L, 1L, 0.25, 1), (status.State, status.Step, status.TotalSteps, status.MaskVersion, status.Sparsity, status.Stage));
        Assert.True(status.EtaSeconds >= 0, $"{status.EtaSeconds}");
        var layer = monitor.Mask(1)!;
        Assert.Equal(["11111100", "11111100", "11111100", "11111100"], layer.Rows);
        Assert.Null(monitor.Mask(2));
    }

    [Fact]
    public void WorkersAreUpsertedByNameAndCountedAliveWhileTheyTrain()
    {
        Run(0);
        monitor.Worker(new WorkerReport("worker-1", WorkerState.Training, "cpu", 1, "http://a:1"));
        monitor.Worker(new WorkerReport("worker-2", WorkerState.Training, "cpu", 1, "http://b:1"));
        monitor.Worker(new WorkerReport("worker-1", WorkerState.Training, "cpu", 1, "http://a:1", Step: 4, Samples: 32, ComputeMs: 80, AllReduceMs: 15, DataWaitMs: 5, AllReduceBytes: 1000));
        Assert.Equal(2, monitor.Status().WorkersAlive);
        monitor.Worker(new WorkerReport("worker-2", WorkerState.Lost, "", 0, "", "process exited with code 137"));
        var workers = monitor.Workers();
        Assert.Equal(["worker-1", "worker-2"], workers.Select(w => w.Id));
        Assert.Equal((4L, 100.0, 320.0, 1000L), (workers[0].Step, workers[0].StepMs, workers[0].ImagesPerSecond, workers[0].AllReduceBytes));
        Assert.Equal(("lost", "http://b:1", "process exited with code 137"), (workers[1].State, workers[1].Endpoint, workers[1].Detail));
        Assert.Equal(1, monitor.Status().WorkersAlive);
    }

    [Fact]
    public void AWorkersStepFiguresArePublishedAtMostOncePerRefreshButItsStateChangesAtOnce()
    {
        Run(0);
        long before = monitor.Sequence;
        for (int s = 0; s < 1_000; s++)
            monitor.Worker(new WorkerReport("worker-1", WorkerState.Training, "cpu", 1, "http://a:1", Step: s, Samples: 32, ComputeMs: 80));
        monitor.Worker(new WorkerReport("worker-1", WorkerState.Lost, "", 0, "", "process exited with code 137"));

        // Within one refresh: the first report (a new worker), its status count, and the loss with its count.
        Assert.InRange(monitor.Sequence - before, 4, 5);
        Assert.Equal(999, monitor.Workers().Single().Step); // the newest figures are always in the snapshot
        Assert.Equal(0, monitor.Status().WorkersAlive);
    }

    [Fact]
    public void TheSnapshotsSizeIsBoundedHoweverLongTheJob()
    {
        Run(20_000);
        for (int e = 0; e < 1_000; e++) monitor.Event(new Notice($"checkpoint {e}", EventKind.Checkpoint));
        int shorter = monitor.Snapshot().CalculateSize();
        for (int s = 20_000; s < 200_000; s++)
            monitor.Step(new StepMetrics(s, 0, 2.0, 0.1, 0.1, 0, 3, 640, 100, 90, 1));
        for (int e = 1_000; e < 6_000; e++) monitor.Event(new Notice($"checkpoint {e}", EventKind.Checkpoint));

        // Ten times the steps and six times the events: the curve still holds 1,000 to 2,000 steps, evenly spread, and
        // the events are the newest 1,000.
        var longer = monitor.Snapshot();
        Assert.InRange(longer.CalculateSize(), shorter / 2, shorter * 2);
        Assert.InRange(longer.Steps.Count, 1_000, 2_001);
        Assert.Equal(1_000, longer.Events.Count);
        Assert.Equal("checkpoint 5999", longer.Events[^1].Message);
    }

    [Fact]
    public void TheSnapshotThinsALongCurveButKeepsItsNewestPoint()
    {
        Run(5_001);
        var snapshot = monitor.Snapshot();
        Assert.InRange(snapshot.Steps.Count, 1_000, 2_001);
        Assert.Equal(5_000, snapshot.Steps[^1].Step);
        Assert.Equal(0, snapshot.Steps[0].Step);
    }

    [Fact]
    public async Task ClosingEndsEveryWatch()
    {
        Run(1);
        var watching = Task.Run(async () =>
        {
            int count = 0;
            await foreach (var _ in monitor.Watch(0, CancellationToken.None)) count++;
            return count;
        });
        await Task.Delay(100);
        monitor.Close();
        Assert.True(await watching.WaitAsync(TimeSpan.FromSeconds(5)) > 0);
    }
}
