using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Export;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;

namespace CondenseCluster.Shared.Training;

/// <summary>How the steps of a run went; <see cref="Workers"/> is empty on a single node.</summary>
public sealed record RunTotals(long Steps, double Seconds, IReadOnlyList<double> StepMs, IReadOnlyList<WorkerTimings> Workers);

/// <summary>
/// The end of a job, the same on one node and on the coordinator: save the trained model; when the schedule is
/// complete, convert it, evaluate the official conversion, recover the pruned classifier, export both forms (the converted one as ONNX too); the same
/// for the weight average (--ema), without the recovery; then the summary.
/// </summary>
public static class TrainingCompletion
{
    public static TrainingSummary Finish(CondenseNet trained, CondenseNet? average, TrainingOptions options, RunSettings run,
        (IImageDataset Train, IImageDataset Test) data, RunTotals totals, Accuracy? lastTest, string? stoppedEarly, ITrainingObserver observer)
    {
        var files = new List<string>();
        void Save(string name, Action<string> save)
        {
            string path = Path.Combine(run.OutputFolder, name);
            save(path);
            files.Add(path);
        }
        Save("model-trained.ccm", p => ModelFile.Save(trained, p));
        if (average is not null) Save("model-ema-trained.ccm", p => ModelFile.Save(average, p));
        var before = ModelCost.Total(options.Model, ModelForm.Training);
        var after = ModelCost.Total(options.Model, ModelForm.Converted);
        TrainingSummary Summary(Accuracy? masked, Accuracy? official, Accuracy? recovered, AverageAccuracy? averaged = null)
        {
            var summary = new TrainingSummary(totals.Steps, totals.Seconds, Statistics.Median(totals.StepMs.Select(t => options.BatchSize / (t / 1000))),
                Statistics.Median(totals.StepMs), run.Allocator, masked, official, recovered, ModelCondensing.Sparsity(ModelCondensing.Masks(trained)),
                before.Parameters, before.Flops,
                after.Parameters, after.Flops, files, stoppedEarly, totals.Workers, averaged);
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
        void Export(string prefix, CondenseNet trainedForm, CondenseNet convertedForm)
        {
            foreach (string extension in new[] { ".ccm", ".pt", ".onnx" })
                Save($"{prefix}-converted{extension}", p => ConvertedModelFile.Save(convertedForm, p, new OnnxExportOptions(Dataset: options.Dataset)));
            Save($"{prefix}-trained.pt", p => PyTorchStateDict.Export(trainedForm, p));
        }
        Export("model", trained, converted);
        AverageAccuracy? averaged = null;
        if (average is not null)
        {
            var averageMasked = Evaluation.Run(average, data.Test, run.Device, run.EvalBatchSize, run.LoaderThreads);
            using var averageConverted = Conversion.Convert(average);
            averaged = new AverageAccuracy(options.EmaDecay, averageMasked, Evaluation.Run(averageConverted, data.Test, run.Device, run.EvalBatchSize, run.LoaderThreads));
            observer.Event(new AverageEvaluated(averaged));
            Export("model-ema", average, averageConverted);
        }
        return Summary(masked, official, recovered, averaged);
    }

}
