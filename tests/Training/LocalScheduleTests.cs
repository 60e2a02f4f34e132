using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests.Training;

/// <summary>
/// A single-node run does at each step boundary what <see cref="JobSchedule"/> says the coordinator does: condensing,
/// evaluations and checkpoints at the same steps, in the same order. Whole tiny runs, alone as <see cref="LocalTrainingTests"/>.
/// </summary>
[Collection(nameof(TrainingEngineTests))]
public class LocalScheduleTests : TempFolderTest
{
    // 6,000 samples / 256 = 23 steps per epoch, 46 in 2 epochs; with C = 4 the stages begin before steps 8, 16 and 23.
    static readonly TrainingOptions Options = LocalTrainingTests.Tiny() with { BatchSize = 256, Epochs = 2, CheckpointEverySteps = 8 };

    [Fact]
    public void ARunAndItsResumptionCondenseEvaluateAndCheckpointWhereTheScheduleSays()
    {
        // The first run stops at step 8, before condensing there; the resumed one condenses first, and at steps 16 and 23
        // it checkpoints (after evaluating at 23) before it condenses.
        var start = Run(stopAfter: 8, resume: false);
        Assert.Equal([(JobBoundary.Checkpoint, 8L)], start.Seen);
        var resumed = Run(stopAfter: 26, resume: true);
        Assert.Equal([(JobBoundary.Condense, 8L), (JobBoundary.Checkpoint, 16), (JobBoundary.Condense, 16), (JobBoundary.Evaluate, 23),
            (JobBoundary.Checkpoint, 23), (JobBoundary.Condense, 23), (JobBoundary.Checkpoint, 24), (JobBoundary.Checkpoint, 26)], resumed.Seen);

        foreach (var (first, last, observer) in new[] { (0L, 8L, start), (8L, 26L, resumed) })
        {
            var plan = new MicroBatchPlan(Options.BatchSize, Options.MicroBatches, 6000, Options.Epochs);
            var schedule = new JobSchedule(plan, Options.Model.CondenseFactor, Options.CheckpointEverySteps, last);
            Assert.Equal(Expected(schedule, first, observer.StartMasks!), observer.Seen);
            Assert.Equal(Enumerable.Range(1, observer.Seen.Count(s => s.Boundary == JobBoundary.Condense)).Select(v => (long)v), observer.Versions);
        }
    }

    Recorder Run(long stopAfter, bool resume)
    {
        var observer = new Recorder();
        string output = Path.Combine(Folder, "run");
        LocalTraining.Run(Options, new RunSettings { Device = torch.CPU, OutputFolder = output, StopAfterStep = stopAfter, ResumeFrom = resume ? output : null },
            observer);
        return observer;
    }

    /// <summary>The coordinator's walk through <paramref name="schedule"/> from <paramref name="first"/>; both end steps write a checkpoint.</summary>
    static List<(JobBoundary Boundary, long At)> Expected(JobSchedule schedule, long first, IReadOnlyList<LayerMask> masks)
    {
        var seen = new List<(JobBoundary, long)>();
        for (long at = first; ; at = schedule.NextBoundary(at))
        {
            foreach (var boundary in schedule.BoundariesAt(at, first, schedule.MasksBehind(masks, at), checkpointRequested: false))
            {
                if (boundary == JobBoundary.Condense)
                    masks = ModelCondensing.Decide(masks, CondensingSchedule.Progress(at, schedule.Plan.TotalSteps), schedule.CondenseFactor,
                        i => new float[masks[i].Kept.GetLength(0), masks[i].Kept.GetLength(1)]).Masks;
                if (boundary != JobBoundary.Run) seen.Add((boundary == JobBoundary.Finish ? JobBoundary.Checkpoint : boundary, at));
            }
            if (at == schedule.LastStep) return seen;
        }
    }

    /// <summary>The boundaries a run reports, in order: new masks, epochs evaluated, checkpoints written.</summary>
    sealed class Recorder : ITrainingObserver
    {
        public List<(JobBoundary Boundary, long At)> Seen { get; } = [];
        public List<long> Versions { get; } = [];
        public IReadOnlyList<LayerMask>? StartMasks { get; private set; }
        long stepsPerEpoch;

        public void Started(RunStarted run) => stepsPerEpoch = run.StepsPerEpoch;
        public void Step(StepMetrics step) { }
        public void Epoch(EpochMetrics epoch) => Seen.Add((JobBoundary.Evaluate, (epoch.Epoch + 1) * stepsPerEpoch));
        public void Finished(TrainingSummary summary) { }

        public void Event(TrainingEvent e)
        {
            if (e is CheckpointWritten written) Seen.Add((JobBoundary.Checkpoint, written.Step));
        }

        public void Masks(long version, long step, IReadOnlyList<LayerMask> masks)
        {
            if (version == 0) StartMasks = masks;
            else
            {
                Versions.Add(version);
                Seen.Add((JobBoundary.Condense, step));
            }
        }
    }
}
