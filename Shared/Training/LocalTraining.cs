using System.Diagnostics;
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
        var resume = ResolveResume(run.ResumeFrom, observer);
        var options = resume?.Header.Options ?? requested;
        options.Validate();

        var (train, test) = Datasets.Open(options.Dataset, options.DataDir, observer.Event);
        CheckDataFitsModel(train, options.Model);
        var plan = new MicroBatchPlan(options.BatchSize, options.MicroBatches, train.Count, options.Epochs);
        plan.Validate();

        using var engine = new TrainingEngine(options, run.Device);
        long first = 0;
        if (resume is not null)
        {
            resume.Restore(engine);
            first = resume.Header.Step;
            observer.Event($"resumed from {resume.Path} at step {first} (its job configuration is used)");
        }
        long last = Math.Min(plan.TotalSteps, run.StopAfterStep ?? plan.TotalSteps);
        observer.Started(new RunStarted($"{options.Arch} on {train.Description}", first, plan.TotalSteps, plan.StepsPerEpoch, options.Epochs,
            options.BatchSize, options.MicroBatches, run.Device.ToString(), torch.get_num_threads(), run.Allocator, run.OutputFolder));

        var stepTimes = new List<double>();
        double epochLoss = 0, epochCorrect = 0, epochSamples = 0;
        var epochClock = Stopwatch.StartNew();
        Accuracy? lastTest = null;
        using (var prefetcher = new BatchPrefetcher(train, Requests(plan, first, last, train.Count, options.Seed), options.Seed, run.LoaderThreads, capacity: 2 * options.MicroBatches))
        {
            for (long step = first; step < last; step++)
            {
                cancel.ThrowIfCancellationRequested();
                var stepClock = Stopwatch.StartNew();
                double progress = CondensingSchedule.Progress(step, plan.TotalSteps);
                int stage = CondensingSchedule.StageAt(progress, options.Model.CondenseFactor);
                if (engine.Condense(progress) > 0)
                    observer.Event($"condensing: stage {stage} of {options.Model.CondenseFactor - 1} at step {step} (progress {progress:F4})");

                double lr = LearningRate.Cosine(options.LearningRate, step, plan.TotalSteps);
                double loss = 0, dataWait = 0;
                int correct = 0, samples = 0;
                engine.BeginStep();
                for (int m = 0; m < options.MicroBatches; m++)
                {
                    var waitClock = Stopwatch.StartNew();
                    var batch = prefetcher.Next();
                    dataWait += waitClock.Elapsed.TotalMilliseconds;
                    using var scope = torch.NewDisposeScope();
                    var (x, y) = BatchTensors.From(batch, train, run.Device);
                    var result = engine.Accumulate(x, y, step, m);
                    (loss, correct, samples) = (loss + result.LossSum, correct + result.Correct, samples + result.Samples);
                }
                engine.ApplyUpdate(lr);

                double ms = stepClock.Elapsed.TotalMilliseconds;
                stepTimes.Add(ms);
                (epochLoss, epochCorrect, epochSamples) = (epochLoss + loss, epochCorrect + correct, epochSamples + samples);
                observer.Step(new StepMetrics(step, plan.EpochOf(step), loss / samples, correct / (double)samples, lr, stage,
                    options.Model.CondenseFactor - 1, samples / (ms / 1000), ms - dataWait, dataWait));

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
                    observer.Event($"checkpoint {store.Save(options, step + 1, engine)}");
            }
        }

        var files = new List<string>();
        string trained = Path.Combine(run.OutputFolder, "model-trained.ccm");
        ModelFile.Save(engine.Model, trained);
        files.Add(trained);
        var before = ModelCost.Total(options.Model, ModelForm.Training);
        var after = ModelCost.Total(options.Model, ModelForm.Converted);
        double sparsity = Sparsity(engine.Model);
        TrainingSummary Finish(Accuracy? masked, Accuracy? official, Accuracy? recovered, string? stoppedEarly)
        {
            var summary = new TrainingSummary(last - first, clock.Elapsed.TotalSeconds, Median(stepTimes, t => options.BatchSize / (t / 1000)),
                Median(stepTimes, t => t), run.Allocator, masked, official, recovered, sparsity, before.Parameters, before.Flops,
                after.Parameters, after.Flops, files, stoppedEarly);
            observer.Finished(summary);
            return summary;
        }
        if (last < plan.TotalSteps)
            return Finish(lastTest, null, null, $"stopped after step {last} of {plan.TotalSteps}; resume with --resume {store.Folder}");

        var masked = lastTest ?? Evaluation.Run(engine.Model, test, run.Device, run.EvalBatchSize, run.LoaderThreads);
        using var converted = Conversion.Convert(engine.Model);
        var official = Evaluation.Run(converted, test, run.Device, run.EvalBatchSize, run.LoaderThreads);
        observer.Event($"converted: test top-1 {official.Top1:P2} with the official pruned classifier (masked model {masked.Top1:P2})");
        Accuracy? recovered = null;
        if (options.RecoverySteps > 0)
        {
            var sample = SampleOrder.Permutation(train.Count, options.Seed, epoch: -1)[..Math.Min(options.RecoverySamples, train.Count)];
            var (features, labels) = Evaluation.Features(converted, train, sample, run.Device, run.EvalBatchSize, run.LoaderThreads);
            using (features)
            using (labels)
                ClassifierRecovery.Fit((CondensedLinear)converted.Classifier, features, labels, options.RecoverySteps, options.Seed);
            recovered = Evaluation.Run(converted, test, run.Device, run.EvalBatchSize, run.LoaderThreads);
            observer.Event($"classifier recovery ({options.RecoverySteps} steps on {sample.Length} training samples): test top-1 {recovered.Value.Top1:P2}");
        }
        foreach (var (path, save) in new (string, Action<string>)[]
        {
            (Path.Combine(run.OutputFolder, "model-converted.ccm"), p => ModelFile.Save(converted, p)),
            (Path.Combine(run.OutputFolder, "model-converted.pt"), p => PyTorchStateDict.Export(converted, p)),
            (Path.Combine(run.OutputFolder, "model-trained.pt"), p => PyTorchStateDict.Export(engine.Model, p)),
        })
        {
            save(path);
            files.Add(path);
        }
        return Finish(masked, official, recovered, null);
    }

    /// <summary>Every micro-batch request of steps [first, last), in order; each epoch's permutation is made once.</summary>
    static IEnumerable<BatchRequest> Requests(MicroBatchPlan plan, long first, long last, int count, int seed)
    {
        int epoch = -1;
        int[] order = [];
        for (long step = first; step < last; step++)
        {
            if (plan.EpochOf(step) != epoch)
            {
                epoch = plan.EpochOf(step);
                order = SampleOrder.Permutation(count, seed, epoch);
            }
            for (int m = 0; m < plan.MicroBatches; m++)
                yield return new BatchRequest(plan.Indices(order, step, m), epoch, Augment: true);
        }
    }

    static LoadedCheckpoint? ResolveResume(string? from, ITrainingObserver observer)
    {
        if (from is null) return null;
        if (File.Exists(from)) return Checkpoint.Read(from);
        if (Directory.Exists(from))
        {
            var store = new CheckpointStore(Directory.Exists(Path.Combine(from, "checkpoints")) ? Path.Combine(from, "checkpoints") : from);
            return store.Latest(observer.Event)
                ?? throw new FileNotFoundException($"no valid checkpoint in '{store.Folder}' to resume from");
        }
        throw new FileNotFoundException($"--resume '{from}' is neither a checkpoint file nor a folder");
    }

    static void CheckDataFitsModel(IImageDataset data, CondenseNetConfig model)
    {
        if (data.Channels != model.InChannels || data.Size != model.InputSize || data.NumClasses != model.NumClasses)
            throw new ConfigurationException(
                $"the data has {data.Channels}x{data.Size}x{data.Size} images in {data.NumClasses} classes, the model expects " +
                $"{model.InChannels}x{model.InputSize}x{model.InputSize} and {model.NumClasses}; build the model for this dataset (--dataset)");
    }

    /// <summary>Fraction of learned-group-conv weights that the masks remove.</summary>
    static double Sparsity(CondenseNet model)
    {
        double zeros = 0, total = 0;
        foreach (var (_, layer) in model.LearnedLayers)
        {
            total += layer.Mask.numel();
            zeros += layer.Mask.numel() - layer.Mask.count_nonzero().item<long>();
        }
        return total == 0 ? 0 : zeros / total;
    }

    static double Median(List<double> values, Func<double, double> map)
    {
        if (values.Count == 0) return 0;
        var sorted = values.Select(map).Order().ToArray();
        return sorted[sorted.Length / 2];
    }
}
