using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;

namespace CondenseCluster.Shared.Training;

/// <summary>How the steps of a run went; <see cref="Workers"/> is empty on a single node.</summary>
public sealed record RunTotals(long Steps, double Seconds, IReadOnlyList<double> StepMs, IReadOnlyList<WorkerTimings> Workers);

/// <summary>
/// The end of a job, the same on one node and on the coordinator: save the trained model; when the schedule is
/// complete, convert it, evaluate the official conversion, recover the pruned classifier, export both forms; then the summary.
/// </summary>
public static class TrainingCompletion
{
    public static TrainingSummary Finish(CondenseNet trained, TrainingOptions options, RunSettings run,
        (IImageDataset Train, IImageDataset Test) data, RunTotals totals, Accuracy? lastTest, string? stoppedEarly, ITrainingObserver observer)
    {
        var files = new List<string>();
        string trainedFile = Path.Combine(run.OutputFolder, "model-trained.ccm");
        ModelFile.Save(trained, trainedFile);
        files.Add(trainedFile);
        var before = ModelCost.Total(options.Model, ModelForm.Training);
        var after = ModelCost.Total(options.Model, ModelForm.Converted);
        TrainingSummary Summary(Accuracy? masked, Accuracy? official, Accuracy? recovered)
        {
            var summary = new TrainingSummary(totals.Steps, totals.Seconds, Statistics.Median(totals.StepMs.Select(t => options.BatchSize / (t / 1000))),
                Statistics.Median(totals.StepMs), run.Allocator, masked, official, recovered, ModelCondensing.Sparsity(ModelCondensing.Masks(trained)),
                before.Parameters, before.Flops,
                after.Parameters, after.Flops, files, stoppedEarly, totals.Workers);
            observer.Finished(summary);
            return summary;
        }
        if (stoppedEarly is not null) return Summary(lastTest, null, null);

        var masked = lastTest ?? Evaluation.Run(trained, data.Test, run.Device, run.EvalBatchSize, run.LoaderThreads);
        using var converted = Conversion.Convert(trained);
        var official = Evaluation.Run(converted, data.Test, run.Device, run.EvalBatchSize, run.LoaderThreads);
        observer.Event(new ModelConverted(official, masked));
        Accuracy? recovered = null;
        if (options.RecoverySteps > 0)
        {
            var sample = SampleOrder.Permutation(data.Train.Count, options.Seed, epoch: -1)[..Math.Min(options.RecoverySamples, data.Train.Count)];
            var (features, labels) = Evaluation.Features(converted, data.Train, sample, run.Device, run.EvalBatchSize, run.LoaderThreads);
            using (features)
            using (labels)
                ClassifierRecovery.Fit((CondensedLinear)converted.Classifier, features, labels, options.RecoverySteps, options.Seed);
            recovered = Evaluation.Run(converted, data.Test, run.Device, run.EvalBatchSize, run.LoaderThreads);
            observer.Event(new ClassifierRecovered(options.RecoverySteps, sample.Length, recovered.Value));
        }
        foreach (var (path, save) in new (string, Action<string>)[]
        {
            (Path.Combine(run.OutputFolder, "model-converted.ccm"), p => ModelFile.Save(converted, p)),
            (Path.Combine(run.OutputFolder, "model-converted.pt"), p => PyTorchStateDict.Export(converted, p)),
            (Path.Combine(run.OutputFolder, "model-trained.pt"), p => PyTorchStateDict.Export(trained, p)),
        })
        {
            save(path);
            files.Add(path);
        }
        return Summary(masked, official, recovered);
    }

}
