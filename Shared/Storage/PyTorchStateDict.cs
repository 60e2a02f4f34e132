using CondenseCluster.Shared.Model;
using System.Collections;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Storage;

/// <summary>
/// Export and import in PyTorch's state-dict file format (the zip written by <c>torch.save</c>), with the official
/// key layout (DESIGN.md §1.4): the files load into the official CondenseNet code with <c>strict=True</c>, and back.
/// </summary>
public static class PyTorchStateDict
{
    /// <summary>Is <paramref name="path"/> a file torch.save wrote (.pt, .pth, or the official checkpoints' .pth.tar), not a native one?</summary>
    public static bool IsPyTorchFile(string path) => Path.GetExtension(path) is ".pt" or ".pth" or ".tar";

    public static void Export(CondenseNet model, string path) => AtomicFile.Write(path, temp => model.save_py(temp));

    /// <summary>A model of <paramref name="config"/> in whichever form the file holds: the training form, else the converted one.</summary>
    public static CondenseNet Import(string path, CondenseNetConfig config)
    {
        try { return Import(path, config, ModelForm.Training); }
        catch (CorruptFileException training)
        {
            try { return Import(path, config, ModelForm.Converted); }
            catch (CorruptFileException) { throw new CorruptFileException($"{training.Message}; nor one of the converted form (check --arch, --dataset, --condense-factor)"); }
        }
    }

    /// <summary>
    /// Builds a model of the given configuration and form and loads the file into it, every key required. Besides a plain
    /// state dict the file may be a checkpoint as the official code writes it: <c>{'state_dict': ...}</c> (epoch and
    /// optimizer beside it are ignored) with DataParallel's <c>module.</c> prefix on every key.
    /// </summary>
    public static CondenseNet Import(string path, CondenseNetConfig config, ModelForm form)
    {
        var tensors = Read(path);
        var model = new CondenseNet(config, form);
        if (StateDictFit.Misfits(model.state_dict(), tensors) is string misfits)
            throw new CorruptFileException($"'{path}' does not hold a {form.ToString().ToLowerInvariant()}-form CondenseNet state dict for {config}: " +
                $"{misfits}; check --arch, --dataset, --condense-factor and whether the file holds the training or the converted form");
        model.load_state_dict(tensors, strict: true);
        foreach (var tensor in tensors.Values) tensor.Dispose();
        return model;
    }

    /// <summary>The tensors of a file <c>torch.save</c> wrote, by name: a state dict, or the <c>'state_dict'</c> of a checkpoint, without DataParallel's <c>module.</c> prefix.</summary>
    public static Dictionary<string, Tensor> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"PyTorch state-dict file '{path}' does not exist", path);
        Hashtable file;
        try { file = PyTorchUnpickler.UnpickleStateDict(path); }
        catch (NotImplementedException e) when (e.Message.Contains("old PyTorch format"))
        {
            throw new CorruptFileException($"'{path}' is in PyTorch's legacy (before 1.6) file format; re-save it in the current one, e.g. with Debian's " +
                $"python3-torch: python3 -c \"import torch; torch.save(torch.load('{path}', map_location='cpu'), '{path}.new.pth')\"");
        }
        catch (Exception e) when (e is not OutOfMemoryException) { throw new CorruptFileException($"'{path}' is not a PyTorch file torch.save wrote: {e.Message}"); }

        var entries = file["state_dict"] as Hashtable ?? file;
        return entries.Cast<DictionaryEntry>().Where(e => e.Value is Tensor)
            .ToDictionary(e => ((string)e.Key).StartsWith("module.", StringComparison.Ordinal) ? ((string)e.Key)["module.".Length..] : (string)e.Key, e => (Tensor)e.Value!);
    }
}
