using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Model;

/// <summary>
/// Converts a fully condensed training-form model into the deployable model (DESIGN.md §1.3): each learned group
/// convolution becomes index_select + BN + ReLU + grouped conv + shuffle, and the classifier keeps the half of its
/// inputs whose weight columns have the largest L1 norm. Features are unchanged; only the pruned classifier changes logits.
/// </summary>
public static class Conversion
{
    public static CondenseNet Convert(CondenseNet trained)
    {
        if (trained.Form != ModelForm.Training) throw new ArgumentException("the model is already converted");
        var device = trained.parameters().First().device;
        var converted = new CondenseNet(trained.Config, ModelForm.Converted);
        using (torch.no_grad())
        {
            // Everything that is not a learned layer or the classifier keeps its name and shape.
            var source = trained.state_dict();
            foreach (var (name, target) in converted.state_dict())
                if (source.TryGetValue(name, out var tensor) && tensor.shape.SequenceEqual(target.shape))
                    target.copy_(tensor);

            foreach (var ((name, learned), (_, condensed)) in trained.LearnedLayers.Zip(converted.CondensedLayers))
                ConvertLayer(name, learned, condensed);
            ConvertClassifier((Linear)trained.Classifier, (CondensedLinear)converted.Classifier);
        }
        return converted.to(device);
    }

    /// <summary>
    /// The gathered input channels: for each group in turn, its kept columns in ascending order.
    /// Every group must keep exactly in / C columns, which holds once all C-1 drops are done.
    /// </summary>
    public static long[] GatherIndex(bool[,] kept, int condenseFactor, string layerName)
    {
        int groups = kept.GetLength(0), inputs = kept.GetLength(1), perGroup = inputs / condenseFactor;
        var index = new List<long>(groups * perGroup);
        for (int g = 0; g < groups; g++)
        {
            var columns = Enumerable.Range(0, inputs).Where(j => kept[g, j]).Select(j => (long)j).ToArray();
            if (columns.Length != perGroup)
                throw new InvalidOperationException(
                    $"{layerName}: group {g} keeps {columns.Length} of {inputs} input columns, but conversion needs exactly {perGroup} " +
                    $"(in / C with C={condenseFactor}); only a model trained past progress 0.5 (all {condenseFactor - 1} drops done) can be converted");
            index.AddRange(columns);
        }
        return index.ToArray();
    }

    static void ConvertLayer(string name, LearnedGroupConv learned, CondensedConv condensed)
    {
        int groups = learned.Groups, outPerGroup = learned.OutChannels / groups;
        var index = GatherIndex(learned.KeptColumns(), learned.CondenseFactor, name);
        using var indexTensor = torch.tensor(index);
        condensed.Index.copy_(indexTensor);

        // Row i + k·G of the old weight (group i, k-th member) becomes row i·(out/G) + k, restricted to the group's inputs.
        using var weight = learned.Weight.detach().cpu().view(outPerGroup, groups, learned.InChannels).transpose(0, 1);
        int perGroup = index.Length / groups;
        var blocks = new Tensor[groups];
        for (int g = 0; g < groups; g++)
        {
            using var columns = indexTensor.narrow(0, g * perGroup, perGroup);
            blocks[g] = weight[g].index_select(1, columns);
        }
        using var grouped = torch.cat(blocks, 0);
        condensed.Weight.copy_(grouped.view(condensed.Weight.shape));
        foreach (var block in blocks) block.Dispose();

        var (from, to) = (learned.Norm, condensed.Norm);
        using var onDevice = indexTensor.to(from.Weight.device);
        foreach (var (source, target) in new[] { (from.Weight, to.Weight), (from.Bias, to.Bias), (from.RunningMean, to.RunningMean), (from.RunningVar, to.RunningVar) })
        {
            using var gathered = source.index_select(0, onDevice);
            target.copy_(gathered);
        }
    }

    /// <summary>The kept classifier inputs: the largest L1 column norms, ordered by ascending norm as the official code keeps them.</summary>
    public static long[] ClassifierIndex(float[] columnNorms, int kept) =>
        Enumerable.Range(0, columnNorms.Length).OrderBy(j => columnNorms[j]).Skip(columnNorms.Length - kept).Select(j => (long)j).ToArray();

    static void ConvertClassifier(Linear trained, CondensedLinear condensed)
    {
        using var weight = trained.weight!.detach().cpu();
        using var norms = weight.abs().sum(0L);
        var index = ClassifierIndex(norms.data<float>().ToArray(), (int)condensed.Index.shape[0]);
        using var indexTensor = torch.tensor(index);
        condensed.Index.copy_(indexTensor);
        condensed.Linear.weight!.copy_(weight.index_select(1, indexTensor));
        condensed.Linear.bias!.copy_(trained.bias!);
    }
}
