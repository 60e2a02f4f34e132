using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests.Training;

/// <summary>--init-from: a run starts from a saved training-form model, with a new classifier where the class count differs.</summary>
[Collection(nameof(TrainingEngineTests))]
public class InitialWeightsTests : TempFolderTest
{
    string Saved(CondenseNetConfig config, string name = "saved.ccm")
    {
        torch.manual_seed(21);
        using var model = new CondenseNet(config);
        ModelCondensing.Apply(model, 0.2); // masks of stage 1 travel with the weights
        string path = Path.Combine(Folder, name);
        if (PyTorchStateDict.IsPyTorchFile(path)) PyTorchStateDict.Export(model, path);
        else ModelFile.Save(model, path);
        return path;
    }

    [Theory]
    [InlineData("saved.ccm")]
    [InlineData("saved.pt")]
    public void TheSameNetworkTakesEveryWeightAndMask(string name)
    {
        string path = Saved(TinyModels.Reference, name);
        torch.manual_seed(22);
        using var model = new CondenseNet(TinyModels.Reference);
        Assert.False(InitialWeights.Load(model, path));
        using var saved = PyTorchStateDict.IsPyTorchFile(path) ? PyTorchStateDict.Import(path, TinyModels.Reference, ModelForm.Training) : ModelFile.Load(path);
        foreach (var (key, tensor) in saved.state_dict()) Assert.True(Tensors.Identical(tensor, model.state_dict()[key]), $"{key} was not loaded");
        Assert.All(ModelCondensing.Masks(model), m => Assert.Equal(1, m.Stage));
    }

    [Fact]
    public void AnotherClassCountKeepsTheSeedsClassifierAndTakesTheFeatures()
    {
        string path = Saved(TinyModels.Reference);
        torch.manual_seed(22);
        using var model = new CondenseNet(TinyModels.Reference with { NumClasses = 3 });
        using var seeded = model.state_dict()["classifier.weight"].clone();
        Assert.True(InitialWeights.Load(model, path));
        using var saved = ModelFile.Load(path);
        Assert.True(Tensors.Identical(seeded, model.state_dict()["classifier.weight"]));
        foreach (var (key, tensor) in saved.state_dict().Where(e => !e.Key.StartsWith("classifier.")))
            Assert.True(Tensors.Identical(tensor, model.state_dict()[key]), $"{key} was not loaded");
    }

    [Fact]
    public void AConvertedModelOrAnotherNetworkIsRefusedNamingWhy()
    {
        string path = Saved(TinyModels.Reference);
        using (var trained = ModelFile.Load(path))
        {
            foreach (double progress in new[] { 0.34, 0.5 }) ModelCondensing.Apply(trained, progress); // fully condensed: convertible
            using var converted = Conversion.Convert(trained);
            ModelFile.Save(converted, Path.Combine(Folder, "converted.ccm"));
        }
        using var model = new CondenseNet(TinyModels.Reference);
        Assert.Contains("holds a converted model", Assert.Throws<ArgumentException>(() => InitialWeights.Load(model, Path.Combine(Folder, "converted.ccm"))).Message);

        using var wider = new CondenseNet(TinyModels.Reference with { Growth = [.. TinyModels.Reference.Growth.Select(g => 2 * g)] });
        var error = Assert.Throws<ArgumentException>(() => InitialWeights.Load(wider, path));
        Assert.Contains("is not a training-form model of", error.Message);
        Assert.Contains("of another shape", error.Message);
    }
}
