using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;

namespace CondenseCluster.Shared.Export;

/// <summary>Writes a converted model in the format its file name asks for: native .ccm, a PyTorch state dict or ONNX.</summary>
public static class ConvertedModelFile
{
    public static readonly string[] Extensions = [".ccm", ".pt", ".pth", ".onnx"];

    public static bool IsOnnx(string path) => Path.GetExtension(path) == ".onnx";

    /// <summary>Why <paramref name="path"/> is refused, or null when its extension names a format.</summary>
    public static string? Refusal(string path) => Extensions.Contains(Path.GetExtension(path)) ? null :
        $"'{path}' must end with .ccm (native), .pt/.pth (PyTorch state dict) or .onnx (ONNX graph)";

    /// <summary>Writes <paramref name="converted"/> to <paramref name="path"/>; <paramref name="onnx"/> applies to .onnx only.</summary>
    public static void Save(CondenseNet converted, string path, OnnxExportOptions onnx)
    {
        if (Refusal(path) is { } refusal) throw new ArgumentException(refusal);
        if (IsOnnx(path)) OnnxExport.Save(converted, path, onnx);
        else if (PyTorchStateDict.IsPyTorchFile(path)) PyTorchStateDict.Export(converted, path);
        else ModelFile.Save(converted, path);
    }
}
