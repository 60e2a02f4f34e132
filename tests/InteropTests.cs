using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests;

public class InteropTests : TempFolderTest
{
    static CondenseNet CondensedTiny()
    {
        torch.manual_seed(3);
        var model = new CondenseNet(TinyModels.Reference);
        TinyModels.RandomizeBatchNorm(model, seed: 5);
        foreach (double p in new[] { 1 / 6.0, 2 / 6.0, 0.5 }) ModelCondensing.Apply(model, p);
        return model;
    }

    [Fact]
    public void TrainingFormPyTorchRoundTripIsExact()
    {
        using var model = CondensedTiny();
        string path = Path.Combine(Folder, "training.pt");
        PyTorchStateDict.Export(model, path);
        using var back = PyTorchStateDict.Import(path, TinyModels.Reference, ModelForm.Training);
        AssertSameStateDict(model, back);
    }

    [Fact]
    public void ConvertedFormPyTorchRoundTripIsExact()
    {
        using var trained = CondensedTiny();
        using var model = Conversion.Convert(trained);
        string path = Path.Combine(Folder, "converted.pt");
        PyTorchStateDict.Export(model, path);
        using var back = PyTorchStateDict.Import(path, TinyModels.Reference, ModelForm.Converted);
        AssertSameStateDict(model, back);
    }

    [Theory]
    [InlineData(ModelForm.Training, "stage3.safetensors")]
    [InlineData(ModelForm.Converted, "converted.safetensors")]
    public void KeyNamesShapesAndTypesAreTheOfficialOnes(ModelForm form, string officialFile)
    {
        // The reference files are state dicts saved by the official PyTorch code (DESIGN.md §1.4).
        var official = SafeTensors.Read(SafeTensors.Reference(officialFile));
        using var model = new CondenseNet(TinyModels.Reference, form);
        var ours = model.state_dict();
        Assert.Equal(official.Keys.Order(), ours.Keys.Order());
        foreach (var (name, tensor) in official)
        {
            Assert.Equal(tensor.shape, ours[name].shape);
            Assert.Equal(tensor.dtype, ours[name].dtype);
        }
    }

    [Fact]
    public void ImportingTheWrongFormIsRefusedWithAClearError()
    {
        using var model = CondensedTiny();
        string path = Path.Combine(Folder, "training.pt");
        PyTorchStateDict.Export(model, path);
        var error = Assert.Throws<CorruptFileException>(() => PyTorchStateDict.Import(path, TinyModels.Reference, ModelForm.Converted));
        Assert.Contains("converted-form", error.Message);
        Assert.Contains(path, error.Message);
    }

    [Theory]
    [InlineData(ModelForm.Training)]
    [InlineData(ModelForm.Converted)]
    public void NativeModelFileRoundTripIsExactAndNeedsNoConfiguration(ModelForm form)
    {
        using var trained = CondensedTiny();
        using var model = form == ModelForm.Training ? trained : Conversion.Convert(trained);
        string path = Path.Combine(Folder, "model.ccm");
        ModelFile.Save(model, path);
        using var back = ModelFile.Load(path);
        Assert.Equal(form, back.Form);
        Assert.Equal(model.Config.Stages, back.Config.Stages);
        AssertSameStateDict(model, back);
    }

    [Fact]
    public void CorruptAndTruncatedModelFilesAreRefused()
    {
        using var model = CondensedTiny();
        string path = Path.Combine(Folder, "model.ccm");
        ModelFile.Save(model, path);
        byte[] bytes = File.ReadAllBytes(path);

        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        Assert.Contains("truncated", Assert.Throws<CorruptFileException>(() => ModelFile.Load(path)).Message);

        bytes[bytes.Length / 2] ^= 0x40;
        File.WriteAllBytes(path, bytes);
        Assert.Contains("checksum", Assert.Throws<CorruptFileException>(() => ModelFile.Load(path)).Message);

        File.WriteAllText(path, "not a model at all");
        Assert.Contains("wrong magic number", Assert.Throws<CorruptFileException>(() => ModelFile.Load(path)).Message);
    }

    static void AssertSameStateDict(CondenseNet expected, CondenseNet actual)
    {
        var a = expected.state_dict();
        var b = actual.state_dict();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, tensor) in a)
            Assert.True(Tensors.Identical(tensor, b[name]), $"{name} differs after the round trip");
    }
}
