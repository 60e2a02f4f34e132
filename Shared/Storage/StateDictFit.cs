using static TorchSharp.torch;

namespace CondenseCluster.Shared.Storage;

/// <summary>Whether saved tensors fit a model's state dict: which keys are missing, unexpected or of another shape.</summary>
public static class StateDictFit
{
    /// <summary>
    /// The misfits of <paramref name="saved"/> against <paramref name="model"/>'s state dict in one line (counts and the
    /// first few keys), or null when every key fits; keys <paramref name="exempt"/> says may differ are not counted.
    /// </summary>
    public static string? Misfits(Dictionary<string, Tensor> model, Dictionary<string, Tensor> saved, Func<string, bool>? exempt = null)
    {
        var counted = model.Keys.Where(k => exempt?.Invoke(k) != true).ToArray();
        var missing = counted.Where(k => !saved.ContainsKey(k)).ToArray();
        var reshaped = counted.Where(k => saved.ContainsKey(k) && !saved[k].shape.SequenceEqual(model[k].shape))
            .Select(k => $"{k} is [{string.Join(", ", saved[k].shape)}], the model's [{string.Join(", ", model[k].shape)}]").ToArray();
        var unexpected = saved.Keys.Except(model.Keys).ToArray();
        var misfits = new[] { ("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped) }
            .Where(group => group.Item2.Length > 0)
            .Select(group => $"{group.Item2.Length} {group.Item1} ({string.Join(", ", group.Item2.Take(3))}{(group.Item2.Length > 3 ? ", …" : "")})")
            .ToArray();
        return misfits.Length == 0 ? null : string.Join("; ", misfits);
    }
}
