using System.Text.Json;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests;

/// <summary>
/// The exported files load into PyTorch itself (Debian's python3-torch, which .ci/run installs) with the official module
/// tree and strict=True, give the same logits there, and a file PyTorch saves loads back here.
/// </summary>
public class PyTorchInteropTests : TempFolderTest
{
    [Theory]
    [InlineData(ModelForm.Training)]
    [InlineData(ModelForm.Converted)]
    public void ExportLoadsStrictlyIntoPyTorchAndPyTorchsFileLoadsBack(ModelForm form)
    {
        torch.manual_seed(11);
        using var trained = new CondenseNet(TinyModels.Reference);
        TinyModels.RandomizeBatchNorm(trained, seed: 2);
        foreach (double p in new[] { 0.2, 0.34, 0.5 }) ModelCondensing.Apply(trained, p);
        using var model = form == ModelForm.Training ? trained : Conversion.Convert(trained);
        model.eval();

        string config = Path.Combine(Folder, "config.json"), exported = Path.Combine(Folder, "model.pt"), back = Path.Combine(Folder, "back.pt");
        File.WriteAllText(config, JsonSerializer.Serialize(TinyModels.Reference));
        PyTorchStateDict.Export(model, exported);

        string output = RunPython(config, form.ToString().ToLowerInvariant(), exported, SafeTensors.Reference("input.safetensors"), back);
        var pytorchLogits = JsonSerializer.Deserialize<float[][]>(output)!;
        using var ours = model.forward(SafeTensors.Read(SafeTensors.Reference("input.safetensors"))["x"]);
        var expected = ours.data<float>().ToArray();
        var actual = pytorchLogits.SelectMany(row => row).ToArray();
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i], 1e-4f);

        using var imported = PyTorchStateDict.Import(back, TinyModels.Reference, form);
        var bias = imported.state_dict()[form == ModelForm.Training ? "classifier.bias" : "classifier.linear.bias"];
        var original = model.state_dict()[form == ModelForm.Training ? "classifier.bias" : "classifier.linear.bias"];
        using var one = 1f.ToScalar();
        Assert.True(Tensors.Identical(original.add(one), bias), "PyTorch's change to the classifier bias did not come back");
    }

    [Fact]
    public void AnOfficialStyleCheckpointLoadsAndALegacyFileIsRefusedWithTheResaveCommand()
    {
        torch.manual_seed(12);
        using var model = new CondenseNet(TinyModels.Reference);
        ModelCondensing.Apply(model, 0.2);
        string plain = Path.Combine(Folder, "model.pt"), official = Path.Combine(Folder, "checkpoint.pth.tar"), legacy = Path.Combine(Folder, "legacy.pth");
        PyTorchStateDict.Export(model, plain);
        // What the official training script saves: the DataParallel model's keys ("module." in front) in {'state_dict'},
        // with the epoch and the optimizer beside it; and the same in PyTorch's pre-1.6 format.
        Python($$"""
            import torch
            sd = torch.load(r'{{plain}}')
            wrapped = dict(('module.' + k, v) for k, v in sd.items())
            torch.save(dict(epoch=3, state_dict=wrapped, optimizer=dict(state=dict())), r'{{official}}')
            torch.save(sd, r'{{legacy}}', _use_new_zipfile_serialization=False)
            """);

        using var loaded = PyTorchStateDict.Import(official, TinyModels.Reference, ModelForm.Training);
        foreach (var (name, tensor) in model.state_dict())
            Assert.True(Tensors.Identical(tensor, loaded.state_dict()[name]), $"{name} differs");
        Assert.Equal(ModelCondensing.Checksum(ModelCondensing.Masks(model)), ModelCondensing.Checksum(ModelCondensing.Masks(loaded)));

        var error = Assert.Throws<CorruptFileException>(() => PyTorchStateDict.Import(legacy, TinyModels.Reference, ModelForm.Training));
        Assert.Contains("legacy (before 1.6) file format", error.Message);
        Assert.Contains($"torch.save(torch.load('{legacy}', map_location='cpu'), '{legacy}.new.pth')", error.Message);
        var other = Assert.Throws<CorruptFileException>(() => PyTorchStateDict.Import(official, TinyModels.Reference with { CondenseFactor = 2 }, ModelForm.Converted));
        Assert.Contains("missing", other.Message);
        Assert.Contains("check --arch, --dataset, --condense-factor", other.Message);
    }

    static void Python(string code)
    {
        var (exit, _, stderr) = ChildProcess.Run("/usr/bin/python3", ["-c", code]);
        Assert.True(exit == 0, $"PyTorch failed (exit {exit}); it needs Debian's python3-torch (apt-get install python3-torch):\n{stderr}");
    }

    /// <summary>
    /// condensenet_statedict.py: loads an export into the official module tree (strict), prints its eval-mode logits on the
    /// input file's "x" as JSON and saves a copy with the classifier bias + 1 (usage in the script).
    /// </summary>
    internal static string RunPython(params string[] args)
    {
        var (code, stdout, stderr) = ChildProcess.Run("/usr/bin/python3", [Path.Combine(AppContext.BaseDirectory, "PyTorch", "condensenet_statedict.py"), .. args]);
        Assert.True(code == 0, $"PyTorch check failed (exit {code}); it needs Debian's python3-torch (apt-get install python3-torch):\n{stderr}");
        return stdout;
    }
}
