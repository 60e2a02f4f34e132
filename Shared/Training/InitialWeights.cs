using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// A run that starts from saved weights and masks (<c>--init-from</c>) instead of the seed's: a training-form model,
/// native (.ccm) or PyTorch (.pt/.pth, as the official code saves it too). To fine-tune on a dataset with another
/// number of classes, the classifier of another shape keeps the seed's initialisation; everything else must match.
/// </summary>
public static class InitialWeights
{
    /// <summary>Loads <paramref name="path"/> into <paramref name="model"/>; returns whether the classifier was left new.</summary>
    public static bool Load(CondenseNet model, string path)
    {
        var saved = Read(path);
        try
        {
            var target = model.state_dict();
            bool IsClassifier(string key) => key.StartsWith("classifier.", StringComparison.Ordinal);
            if (StateDictFit.Misfits(target, saved, exempt: IsClassifier) is string misfits)
                throw new ArgumentException($"--init-from '{path}' is not a training-form model of {model.Config}: {misfits}; " +
                    "a converted model cannot be trained on, and --arch, --stages, --growth and --condense-factor must be the model's");
            bool newClassifier = target.Keys.Where(IsClassifier).Any(k => !saved.ContainsKey(k) || !saved[k].shape.SequenceEqual(target[k].shape));
            using var _ = torch.no_grad();
            foreach (var (key, tensor) in target)
                if (!(newClassifier && IsClassifier(key))) tensor.copy_(saved[key]);
            return newClassifier;
        }
        finally
        {
            foreach (var tensor in saved.Values) tensor.Dispose();
        }
    }

    static Dictionary<string, Tensor> Read(string path)
    {
        if (PyTorchStateDict.IsPyTorchFile(path)) return PyTorchStateDict.Read(path);
        using var file = ModelFile.Load(path);
        if (file.Form != ModelForm.Training)
            throw new ArgumentException($"--init-from '{path}' holds a converted model; training starts from a training-form one (model-trained.ccm or .pt)");
        return file.state_dict().ToDictionary(e => e.Key, e => e.Value.detach().clone());
    }
}
