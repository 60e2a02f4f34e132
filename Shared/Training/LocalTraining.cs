using System.Diagnostics;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using TorchSharp;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// A whole training job on one node: the official recipe (DESIGN.md §1.5) with the fixed micro-batch plan,
/// condensing at the exact step each boundary is crossed, evaluation each epoch, checkpoints, and at the end conversion,
/// classifier recovery and export.
/// </summary>
public static class LocalTraining
{
    public static TrainingSummary Run(TrainingOptions requested, RunSettings run, ITrainingObserver observer, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var store = new CheckpointStore(Path.Combine(run.OutputFolder, "checkpoints"));
        var resume = CheckpointStore.Resolve(run.ResumeFrom, observer.Event);
        var options = resume?.Header.Options ?? requested;
        options.Validate();

        var (train, test) = Datasets.Open(options.Dataset, options.DataDir, message => observer.Event(new Notice(message)));
        Datasets.CheckFits(train, options.Model);
        var plan = new MicroBatchPlan(options.BatchSize, options.MicroBatches, train.Count, options.Epochs);
        plan.Validate();

        using var engine = new TrainingEngine(options, run.Device);
        // The workers' step code on a ring of one: nothing to exchange.
        var steps = new DistributedStep(engine, plan, SingleRank.Instance, new GradientExchange(1, SendMaskedGradients: true, WirePrecision.Float32));
        long first = 0;
        if (resume is not null)
        {
            resume.Restore(engine);
            first = resume.Header.Step;
            observer.Event(new ResumedFromCheckpoint(resume.Path, first));
        }
        long last = Math.Min(plan.TotalSteps, run.StopAfterStep ?? plan.TotalSteps);
        observer.Started(new RunStarted($"{options.Arch} on {train.Description}", first, plan.TotalSteps, plan.StepsPerEpoch, options.Epochs,
            options.BatchSize, options.MicroBatches, run.Device.ToString(), torch.get_num_threads(), run.Allocator, run.OutputFolder));

        long maskVersion = 0;
        observer.Masks(maskVersion, first, ModelCondensing.Masks(engine.Model));
        var stepTimes = new List<double>();
        double epochLoss = 0, epochCorrect = 0, epochSamples = 0;
        var epochClock = Stopwatch.StartNew();
        Accuracy? lastTest = null;
        using (var prefetcher = new BatchPrefetcher(train, plan.Requests(first, last, options.Seed), options.Seed, run.LoaderThreads, capacity: 2 * options.MicroBatches))
        {
            for (long step = first; step < last; step++)
            {
                cancel.ThrowIfCancellationRequested();
                var stepClock = Stopwatch.StartNew();
                double progress = CondensingSchedule.Progress(step, plan.TotalSteps);
                int stage = CondensingSchedule.StageAt(progress, options.Model.CondenseFactor);
                if (engine.Condense(progress) > 0)
                {
                    observer.Event(new CondensingStage(step, stage, options.Model.CondenseFactor - 1, progress));
                    observer.Masks(++maskVersion, step, ModelCondensing.Masks(engine.Model));
                }

                double lr = LearningRate.Cosine(options.LearningRate, step, plan.TotalSteps);
                var outcome = steps.Run(step, prefetcher, train, lr);
                var (loss, correct, samples) = outcome.Total;
                double dataWait = outcome.DataWaitMs;

                double ms = stepClock.Elapsed.TotalMilliseconds;
                stepTimes.Add(ms);
                (epochLoss, epochCorrect, epochSamples) = (epochLoss + loss, epochCorrect + correct, epochSamples + samples);
                observer.Step(new StepMetrics(step, plan.EpochOf(step), loss / samples, correct / (double)samples, lr, stage,
                    options.Model.CondenseFactor - 1, samples / (ms / 1000), ms, ms - dataWait, dataWait));

                bool epochEnd = (step + 1) % plan.StepsPerEpoch == 0;
                if (epochEnd)
                {
                    lastTest = Evaluation.Run(engine.Model, test, run.Device, run.EvalBatchSize, run.LoaderThreads);
                    observer.Epoch(new EpochMetrics(plan.EpochOf(step), epochLoss / epochSamples, epochCorrect / epochSamples, lastTest.Value,
                        epochClock.Elapsed.TotalSeconds));
                    (epochLoss, epochCorrect, epochSamples) = (0, 0, 0);
                    epochClock.Restart();
                }
                bool periodic = options.CheckpointEverySteps > 0 && (step + 1) % options.CheckpointEverySteps == 0;
                if (epochEnd || periodic || step + 1 == last)
                    observer.Event(new CheckpointWritten(store.Save(options, step + 1, engine.SaveState), step + 1));
            }
        }

        var stopped = last < plan.TotalSteps ? $"stopped after step {last} of {plan.TotalSteps}; resume with --resume {store.Folder}" : null;
        return TrainingCompletion.Finish(engine.Model, options, run, (train, test), new RunTotals(last - first, clock.Elapsed.TotalSeconds, stepTimes, []),
            lastTest, stopped, observer);
    }
}
