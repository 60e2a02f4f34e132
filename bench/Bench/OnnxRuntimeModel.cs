using CondenseCluster.Shared.Export;
using Microsoft.ML.OnnxRuntime;

namespace CondenseCluster.Bench;

/// <summary>An exported CondenseNet (<see cref="OnnxExport"/>) run by ONNX Runtime on the CPU.</summary>
public sealed class OnnxRuntimeModel : IDisposable
{
    readonly InferenceSession session;
    readonly string[] outputs = [OnnxExport.LogitsName, OnnxExport.FeaturesName];

    /// <summary>
    /// Loads (and so validates) the file. <paramref name="optimization"/>: ONNX Runtime's graph rewrites, from none to
    /// all (constant folding, Conv + Relu fusion, layout changes); <paramref name="threads"/>: intra-op threads.
    /// </summary>
    public OnnxRuntimeModel(string path, GraphOptimizationLevel optimization, int threads)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = optimization, IntraOpNumThreads = threads, InterOpNumThreads = 1 };
        // Its threads otherwise spin for work after each run, taking the cores from libtorch when the two alternate.
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        session = new InferenceSession(path, options);
    }

    public IReadOnlyDictionary<string, string> Metadata => session.ModelMetadata.CustomMetadataMap;

    /// <summary>Logits [N, classes] and pooled features [N, channels] of normalised images [N, C, H, W], row-major.</summary>
    public (float[] Logits, float[] Features) Run(float[] images, long[] shape)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(images, shape);
        using var runOptions = new RunOptions();
        using var results = session.Run(runOptions, [OnnxExport.InputName], [input], outputs);
        return (results[0].GetTensorDataAsSpan<float>().ToArray(), results[1].GetTensorDataAsSpan<float>().ToArray());
    }

    public void Dispose() => session.Dispose();
}
