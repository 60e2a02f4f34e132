using CondenseCluster.Shared.Export;
using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Training;

/// <summary>The deployable condensed model of a checkpoint (official conversion, no classifier recovery), as a file.</summary>
public static class CheckpointExport
{
    /// <summary>Why a model at <paramref name="stage"/> cannot be converted yet.</summary>
    public static string NotCondensed(long step, int stage, int finalStage) =>
        $"the model of step {step} is at condensing stage {stage} of {finalStage}; it can be converted once condensing is complete, halfway through training";

    /// <summary>
    /// Converts the model <paramref name="checkpoint"/> holds and writes it to <paramref name="path"/>: native .ccm, a
    /// PyTorch state dict for .pt/.pth, or an ONNX graph for .onnx (dynamic batch, default opset). Returns the converted model's parameters and FLOPs.
    /// </summary>
    public static CostRow Export(LoadedCheckpoint checkpoint, string path)
    {
        var options = checkpoint.Header.Options;
        using var trained = new CondenseNet(options.Model);
        using (var reader = new BinaryReader(new MemoryStream(checkpoint.ReadState()))) trained.load(reader, strict: true);
        int stage = trained.LearnedLayers.Min(l => l.Layer.Stage), final = options.Model.CondenseFactor - 1;
        if (stage < final) throw new InvalidOperationException(NotCondensed(checkpoint.Header.Step, stage, final));
        using var converted = Conversion.Convert(trained);
        ConvertedModelFile.Save(converted, path, new OnnxExportOptions(Dataset: checkpoint.Header.Options.Dataset));
        return ModelCost.Total(options.Model, ModelForm.Converted);
    }
}
