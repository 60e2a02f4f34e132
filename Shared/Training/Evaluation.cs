using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>Top-1 and top-5 accuracy (fractions) and mean cross-entropy on a set of samples.</summary>
public readonly record struct Accuracy(double Top1, double Top5, double Loss, int Samples)
{
    /// <summary>The accuracy of several disjoint shards together, weighted by their sizes.</summary>
    public static Accuracy Combine(IReadOnlyCollection<Accuracy> shards)
    {
        int samples = shards.Sum(s => s.Samples);
        double Weighted(Func<Accuracy, double> value) => samples == 0 ? 0 : shards.Sum(s => value(s) * s.Samples) / samples;
        return new(Weighted(s => s.Top1), Weighted(s => s.Top5), Weighted(s => s.Loss), samples);
    }
}

/// <summary>Runs a model over a dataset in evaluation mode, batch by batch, with no gradient and bounded memory.</summary>
public static class Evaluation
{
    /// <summary>Accuracy on <paramref name="indices"/> of <paramref name="data"/> (default: all of it).</summary>
    public static Accuracy Run(CondenseNet model, IImageDataset data, Device device, int batchSize, int loaderThreads, int[]? indices = null)
    {
        indices ??= Enumerable.Range(0, data.Count).ToArray();
        double loss = 0;
        long top1 = 0, top5 = 0;
        int k = Math.Min(5, data.NumClasses);
        ForEachBatch(model, data, indices, device, batchSize, loaderThreads, (features, logits, labels) =>
        {
            loss += nn.functional.cross_entropy(logits, labels, reduction: nn.Reduction.Sum).item<float>();
            top1 += logits.argmax(1).eq(labels).sum().item<long>();
            top5 += logits.topk(k).indexes.eq(labels.unsqueeze(1)).any(1).sum().item<long>();
        });
        int n = Math.Max(1, indices.Length);
        return new(top1 / (double)n, top5 / (double)n, loss / n, indices.Length);
    }

    /// <summary>Pooled features [N, F] (on the device) and labels [N] of the given samples, without augmentation.</summary>
    public static (Tensor Features, Tensor Labels) Features(CondenseNet model, IImageDataset data, int[] indices, Device device, int batchSize, int loaderThreads)
    {
        var features = new List<Tensor>();
        var labels = new List<Tensor>();
        ForEachBatch(model, data, indices, device, batchSize, loaderThreads, (f, _, y) =>
        {
            features.Add(f.detach().MoveToOuterDisposeScope());
            labels.Add(y.MoveToOuterDisposeScope());
        });
        var result = (torch.cat(features, 0), torch.cat(labels, 0));
        foreach (var t in features.Concat(labels)) t.Dispose();
        return result;
    }

    /// <summary>Evaluation-mode forward over batches; each batch's tensors live only for the callback.</summary>
    static void ForEachBatch(CondenseNet model, IImageDataset data, int[] indices, Device device, int batchSize, int loaderThreads,
        Action<Tensor, Tensor, Tensor> onBatch)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var requests = indices.Chunk(batchSize).Select(chunk => new BatchRequest(chunk, 0, Augment: false));
            using var prefetcher = new BatchPrefetcher(data, requests, seed: 0, threads: loaderThreads, capacity: 2);
            using var _ = torch.no_grad();
            // A converted model runs compiled: the same outputs, faster (its weights do not change while it is evaluated).
            using var compiled = model.Form == ModelForm.Converted ? CondensedInference.Compile(model) : null;
            for (int done = 0; done < indices.Length;)
            {
                using var scope = torch.NewDisposeScope();
                var batch = prefetcher.Next();
                var (x, y) = BatchTensors.From(batch, data, device);
                var features = compiled?.Features(x) ?? model.Features(x);
                onBatch(features, model.Classifier.forward(features), y);
                done += batch.Count;
            }
        }
        finally
        {
            model.train(wasTraining);
        }
    }
}

/// <summary>Turns assembled batches into image and label tensors on the device.</summary>
public static class BatchTensors
{
    /// <summary>The next batch of a prefetcher whose requests were planned to cover every use.</summary>
    public static Batch Next(this BatchPrefetcher prefetcher) =>
        prefetcher.TryTake(out var batch) ? batch : throw new InvalidOperationException("the batch plan ran out before the steps that use it");

    public static (Tensor Images, Tensor Labels) From(Batch batch, IImageDataset data, Device device) =>
        (torch.tensor(batch.Images, [batch.Count, data.Channels, data.Size, data.Size]).to(device),
         torch.tensor(batch.Labels).to(device));
}
