using CondenseCluster.Shared.Model;
using TorchSharp.PyBridge;

namespace CondenseCluster.Shared.Storage;

/// <summary>
/// Export and import in PyTorch's state-dict file format (the zip written by <c>torch.save</c>), with the official
/// key layout (DESIGN.md §1.4): the files load into the official CondenseNet code with <c>strict=True</c>, and back.
/// </summary>
public static class PyTorchStateDict
{
    public static void Export(CondenseNet model, string path)
    {
        string fullPath = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(fullPath)!);
        string temp = fullPath + ".tmp";
        model.save_py(temp);
        File.Move(temp, fullPath, overwrite: true);
    }

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

    /// <summary>Builds a model of the given configuration and form and loads the file into it, every key required.</summary>
    public static CondenseNet Import(string path, CondenseNetConfig config, ModelForm form)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"PyTorch state-dict file '{path}' does not exist", path);
        var model = new CondenseNet(config, form);
        try
        {
            model.load_py(path, strict: true);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new CorruptFileException(
                $"'{path}' does not hold a {form.ToString().ToLowerInvariant()}-form CondenseNet state dict for {config}: {e.Message}");
        }
        return model;
    }
}
