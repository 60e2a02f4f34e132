using System.Diagnostics;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using TorchSharp;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// A whole training job on one node: the official recipe (DESIGN.md §1.5) with the fixed micro-batch plan, and the
/// coordinator's <see cref="JobSchedule"/> (condensing at the exact step each stage begins, evaluation each epoch,
/// checkpoints), then at the end conversion, classifier recovery and export.
/// </summary>
public static class LocalTraining
{
    public static TrainingSummary Run(TrainingOptions requested, RunSettings run, ITrainingObserver observer, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var store = CheckpointStore.OfRun(run.OutputFolder);
        var resume = CheckpointStore.Resolve(run.ResumeFrom, observer.Event);
        var options = resume?.Header.Options ?? requested;
        options.Validate();

        var (train, test) = Datasets.Open(options.Dataset, options.DataDir, message => observer.Event(new Notice(message)), options.Model.InputSize);
        Datasets.CheckFits(train, options.Model);
        var plan = new MicroBatchPlan(options.BatchSize, options.MicroBatches, train.Count, options.Epochs);
        plan.Validate();

        using var engine = new TrainingEngine(options, run.Device);
        // The workers' step code on a ring of one: nothing to exchange.
        using var steps = new DistributedStep(engine, plan, SingleRank.Instance, new GradientExchange(1, SendMaskedGradients: true, WirePrecision.Float32));
        long first = 0;
        if (resume is not null)
        {
            resume.Restore(engine);
            first = resume.Header.Step;
            observer.Event(new ResumedFromCheckpoint(resume.Path, first));
        }
        else if (run.InitFrom is { } from) observer.Event(new InitializedFrom(from, engine.LoadInitialWeights(from)));
        if (LearningRate.Scaled(options) is { } scaled) observer.Event(scaled);
        var schedule = JobSchedule.For(options, run, plan);
        long last = schedule.LastStep;
        observer.Started(new RunStarted($"{options.Arch} on {train.Description}", first, plan.TotalSteps, plan.StepsPerEpoch, options.Epochs,
            options.BatchSize, options.MicroBatches, run.Device.ToString(), torch.get_num_threads(), run.Allocator, run.OutputFolder));

        long maskVersion = 0;
        var masks = ModelCondensing.Masks(engine.Model);
        observer.Masks(maskVersion, first, masks);
        var metrics = new RunMetrics(options, plan);
        metrics.Start();
        Accuracy? lastTest = null;
        using (var prefetcher = new BatchPrefetcher(train, plan.Requests(first, last, options.Seed), options.Seed, run.LoaderThreads, capacity: 2 * options.MicroBatches))
        {
            // The coordinator's walk on one node: what the schedule asks for at each boundary, then the steps up to the next one.
            long at = first;
            bool finished = false;
            var sinceCheckpoint = Stopwatch.StartNew();
            while (!finished)
                foreach (var boundary in schedule.BoundariesAt(at, first, schedule.MasksBehind(masks, at), at > first && schedule.TimedCheckpointDue(sinceCheckpoint.Elapsed)))
                    switch (boundary)
                    {
                        case JobBoundary.Condense:
                            double progress = CondensingSchedule.Progress(at, plan.TotalSteps);
                            engine.Condense(progress);
                            masks = ModelCondensing.Masks(engine.Model);
                            observer.Event(new CondensingStage(at, schedule.StageOf(at), options.Model.CondenseFactor - 1, progress));
                            observer.Masks(++maskVersion, at, masks);
                            break;
                        case JobBoundary.Evaluate:
                            lastTest = Evaluation.Run(engine.Model, test, run.Device, run.EvalBatchSize, run.LoaderThreads);
                            observer.Epoch(metrics.Epoch(at, lastTest.Value));
                            break;
                        case JobBoundary.Checkpoint or JobBoundary.Finish:
                            observer.Event(new CheckpointWritten(store.Save(options, at, engine.SaveState), at));
                            sinceCheckpoint.Restart();
                            finished = boundary == JobBoundary.Finish;
                            break;
                        case JobBoundary.Run:
                            // A timed checkpoint cuts the segment short, after at least one step.
                            for (long to = schedule.NextBoundary(at), from = at; at < to && (at == from || !schedule.TimedCheckpointDue(sinceCheckpoint.Elapsed)); at++)
                            {
                                cancel.ThrowIfCancellationRequested();
                                var stepClock = Stopwatch.StartNew();
                                var outcome = steps.Run(at, prefetcher, train, LearningRate.At(options, plan, at));
                                var (loss, correct, samples) = outcome.Total;
                                double ms = stepClock.Elapsed.TotalMilliseconds;
                                observer.Step(metrics.Step(at, masks.Max(m => m.Stage), loss, correct, samples, ms, ms - outcome.DataWaitMs, outcome.DataWaitMs,
                                    outcome.UpdateSkipped));
                            }
                            break;
                    }
        }

        var stopped = last < plan.TotalSteps ? $"stopped after step {last} of {plan.TotalSteps}; resume with --resume {store.Folder}" : null;
        return TrainingCompletion.Finish(engine.Model, engine.Average?.Model, options, run, (train, test), new RunTotals(last - first, clock.Elapsed.TotalSeconds, metrics.StepMs, []),
            lastTest, stopped, observer);
    }
}
