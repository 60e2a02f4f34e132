using System.Globalization;
using System.Text.Json;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Export.Onnx;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using Google.Protobuf;
using TorchSharp;
using Sequential = TorchSharp.Modules.Sequential;
using Conv2d = TorchSharp.Modules.Conv2d;
using AvgPool2d = TorchSharp.Modules.AvgPool2d;
using ReLU = TorchSharp.Modules.ReLU;
using Linear = TorchSharp.Modules.Linear;
using static CondenseCluster.Shared.Export.OnnxGraph;
using static TorchSharp.torch;

namespace CondenseCluster.Shared.Export;

/// <summary>
/// How to export: the ONNX operator set, a fixed batch size or a dynamic one (null), and the dataset whose input
/// normalisation the metadata records (null: the one the model's shape was built for, see <see cref="OnnxExport.DatasetOf"/>).
/// </summary>
public sealed record OnnxExportOptions(int Opset = OnnxExport.DefaultOpset, int? Batch = null, string? Dataset = null);

/// <summary>
/// The converted CondenseNet as an ONNX graph (opset 13–21), computing what <see cref="CondenseNet.forward"/> computes:
/// <list type="bullet">
/// <item>stem Conv; per dense layer: Gather of the kept input channels (the index layer), BatchNorm as Mul + Add, Relu,
/// the grouped 1x1 Conv with the following BatchNorm folded into its weight and bias, Relu, the channel shuffle as
/// Reshape → Transpose → Reshape, the grouped 3x3 Conv, and Concat with the block's input;</item>
/// <item>AveragePool 2x2 between blocks; the last BatchNorm, Relu, GlobalAveragePool and Flatten give the
/// <see cref="FeaturesName"/> output; Gather of the kept features and Gemm give the <see cref="LogitsName"/> output.</item>
/// </list>
/// The BatchNorm before each gathered 1x1 convolution and the last one stay Mul + Add: they normalise features that
/// many layers share, so no single convolution can absorb them. The input is the normalised image (see the metadata).
/// </summary>
public static class OnnxExport
{
    /// <summary>The newest opset Debian's onnx checker (1.12) knows; ONNX Runtime 1.32 runs 13 through 21.</summary>
    public const int DefaultOpset = 17, MinOpset = 13, MaxOpset = 21;
    public const string InputName = "images", LogitsName = "logits", FeaturesName = "features";

    /// <summary>Writes the model to <paramref name="path"/> (whole or not at all).</summary>
    public static void Save(CondenseNet converted, string path, OnnxExportOptions options)
    {
        var model = Build(converted, options);
        AtomicFile.Write(path, temp =>
        {
            using var file = File.Create(temp);
            model.WriteTo(file);
        });
    }

    public static ModelProto Build(CondenseNet converted, OnnxExportOptions options)
    {
        CheckOpset(options.Opset);
        if (options.Batch is < 1) throw new ArgumentException($"batch size {options.Batch} must be positive, or dynamic");
        CheckExportable(converted);
        var config = converted.Config;
        string dataset = options.Dataset ?? DatasetOf(config) ?? throw new ArgumentException(
            $"the model ({config}) matches none of the datasets {string.Join(", ", Datasets.Names)}; name the one it was trained on (--dataset) so the metadata records its input normalisation");
        var normalization = Normalization.Of(dataset);

        var graph = new OnnxGraph("condensenet");
        var batch = options.Batch is int fixedBatch ? Dim(fixedBatch) : Dim("batch");
        graph.Input(InputName, batch, Dim(config.InChannels), Dim(config.InputSize), Dim(config.InputSize));
        using (torch.no_grad())
        {
            var state = converted.state_dict();
            var features = Features(graph, config, key => state[key]);
            var kept = graph.Node("Gather", "classifier.gather", [features, graph.Initializer("classifier.index", state["classifier.index"])], [Int("axis", 1)]);
            graph.Node("Gemm", "classifier.linear", [kept, graph.Initializer("classifier.linear.weight", state["classifier.linear.weight"]),
                graph.Initializer("classifier.linear.bias", state["classifier.linear.bias"])], [Int("transB", 1)], output: LogitsName);
        }
        graph.Output(LogitsName, batch, Dim(config.NumClasses));
        graph.Output(FeaturesName, batch, Dim(config.FinalChannels));

        var model = new ModelProto
        {
            IrVersion = IrVersionFor(options.Opset),
            ProducerName = "CondenseCluster",
            ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "",
            Graph = graph.Proto,
            DocString = $"CondenseNet ({config}), converted (condensed) form",
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = options.Opset });
        foreach (var (key, value) in Metadata(config, dataset, normalization))
            model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return model;
    }

    /// <summary>Throws with the fix when <paramref name="opset"/> is outside what the export writes and the checkers accept.</summary>
    public static void CheckOpset(int opset)
    {
        if (opset is < MinOpset or > MaxOpset)
            throw new ArgumentException($"opset {opset} is not supported: choose {MinOpset} to {MaxOpset} (default {DefaultOpset}, the newest Debian's onnx 1.12 checker accepts)");
    }

    /// <summary>"dynamic" (the batch size is chosen when the model runs) or a positive batch size.</summary>
    public static int? ParseBatch(string text)
    {
        if (text.Equals("dynamic", StringComparison.OrdinalIgnoreCase)) return null;
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int size) && size > 0) return size;
        throw new ArgumentException($"--batch '{text}' must be 'dynamic' or a positive batch size, e.g. 1");
    }

    /// <summary>The dataset a model's input shape was built for (<see cref="CondenseNetConfig.ForDataset"/>), or null.</summary>
    public static string? DatasetOf(CondenseNetConfig config) => config switch
    {
        { InChannels: 1, NumClasses: 10 } => "fashion-mnist",
        { InChannels: 3, InitStride: 2 } => "imagenet",
        { InChannels: 3, NumClasses: 10 } => "cifar10",
        { InChannels: 3, NumClasses: 100 } => "cifar100",
        _ => null,
    };

    /// <summary>The IR version that came with each opset: a reader checks that the file's IR version knows its opset.</summary>
    static long IrVersionFor(int opset) => opset switch { <= 14 => 7, <= 18 => 8, <= 20 => 9, _ => 10 };

    static readonly Type[] ExportedModules =
        [typeof(CondenseNet), typeof(Sequential), typeof(Conv2d), typeof(DenseLayer), typeof(CondensedConv), typeof(BnReluConv),
         typeof(BatchNorm), typeof(AvgPool2d), typeof(ReLU), typeof(CondensedLinear), typeof(Linear)];

    /// <summary>Only the converted form, with no layer the graph below does not know, can be exported.</summary>
    static void CheckExportable(CondenseNet model)
    {
        if (model.Form != ModelForm.Converted)
            throw new ArgumentException("the model is in the training form; only the converted (condensed) model exports to ONNX: convert it first " +
                "(model convert --in model-trained.ccm --out model-converted.ccm, once condensing is complete)");
        foreach (var (name, module) in model.named_modules())
            if (!ExportedModules.Contains(module.GetType()))
                throw new NotSupportedException($"layer '{name}' ({module.GetType().Name}) has no ONNX form in this export; it knows {string.Join(", ", ExportedModules.Select(t => t.Name))}");
    }

    /// <summary>The stem, the dense blocks and the head up to the pooled features [N, final channels].</summary>
    static string Features(OnnxGraph graph, CondenseNetConfig config, Func<string, Tensor> state)
    {
        int stride = config.InitStride, size = config.InputSize / stride;
        var x = graph.Node("Conv", "features.init_conv", [InputName, graph.Initializer("features.init_conv.weight", state("features.init_conv.weight"))],
            [Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Ints("strides", stride, stride)]);
        foreach (var layer in config.DenseLayers())
        {
            if (layer.Layer == 0 && layer.Block > 0)
            {
                x = graph.Node("AveragePool", $"features.transition_{layer.Block}", [x], [Ints("kernel_shape", 2, 2), Ints("strides", 2, 2)]);
                size /= 2;
            }
            var grown = DenseLayer(graph, config, layer, x, size, state);
            x = graph.Node("Concat", layer.Name, [x, grown], [Int("axis", 1)]);
        }
        var normalized = NormRelu(graph, "features.norm_last", x, state);
        var pooled = graph.Node("GlobalAveragePool", "features.pool_last", [normalized]);
        return graph.Node("Flatten", "features.flatten", [pooled], [Int("axis", 1)], output: FeaturesName);
    }

    /// <summary>One dense layer's new feature maps [N, growth, size, size] from its input (DESIGN.md §1.3).</summary>
    static string DenseLayer(OnnxGraph graph, CondenseNetConfig config, DenseLayerShape layer, string input, int size, Func<string, Tensor> state)
    {
        string conv1 = $"{layer.Name}.conv_1", conv2 = $"{layer.Name}.conv_2";
        int groups = config.Group1x1, outChannels = layer.Bottleneck;
        var gathered = graph.Node("Gather", $"{conv1}.index_select", [input, graph.Initializer($"{conv1}.index", state($"{conv1}.index"))], [Int("axis", 1)]);
        var normalized = NormRelu(graph, $"{conv1}.norm", gathered, state);

        var (scale2, shift2) = BatchNorm.EvalScaleShift(key => state($"{conv2}.norm.{key}"));
        var (weight, bias) = CondensedConv.FoldNormAfterShuffle(state($"{conv1}.conv.weight"), scale2, shift2, groups);
        string grouped;
        using (scale2)
        using (shift2)
        using (weight)
        using (bias)
            grouped = graph.Node("Conv", $"{conv1}.conv", [normalized, graph.Initializer($"{conv1}.conv.weight+{conv2}.norm", weight),
                graph.Initializer($"{conv1}.conv.bias+{conv2}.norm", bias)], [Ints("kernel_shape", 1, 1), Int("group", groups)]);
        var activated = graph.Node("Relu", $"{conv2}.relu", [grouped]); // the ReLU of conv_2's BN → ReLU, before the shuffle: it is per element

        // The shuffle: channels as (G, out/G), swapped, flattened; 0 keeps the batch size, which may be dynamic.
        var split = graph.Node("Reshape", $"{conv1}.shuffle.split", [activated, graph.Shape(0, groups, outChannels / groups, size, size)]);
        var swapped = graph.Node("Transpose", $"{conv1}.shuffle.transpose", [split], [Ints("perm", 0, 2, 1, 3, 4)]);
        var shuffled = graph.Node("Reshape", $"{conv1}.shuffle", [swapped, graph.Shape(0, outChannels, size, size)]);

        return graph.Node("Conv", $"{conv2}.conv", [shuffled, graph.Initializer($"{conv2}.conv.weight", state($"{conv2}.conv.weight"))],
            [Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1), Int("group", config.Group3x3)]);
    }

    /// <summary>Eval BatchNorm → ReLU as Mul, Add, Relu with per-channel constants [C, 1, 1].</summary>
    static string NormRelu(OnnxGraph graph, string name, string input, Func<string, Tensor> state)
    {
        var (scale, shift) = BatchNorm.EvalScaleShift(key => state($"{name}.{key}"));
        using (scale)
        using (shift)
        {
            var scaled = graph.Node("Mul", $"{name}.mul", [input, graph.Initializer($"{name}.scale", scale.view(-1, 1, 1))]);
            var shifted = graph.Node("Add", $"{name}.add", [scaled, graph.Initializer($"{name}.shift", shift.view(-1, 1, 1))]);
            return graph.Node("Relu", $"{name}.relu", [shifted]);
        }
    }

    static IEnumerable<(string, string)> Metadata(CondenseNetConfig config, string dataset, Normalization normalization)
    {
        static string Floats(IEnumerable<float> values) => string.Join(",", values.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
        yield return ("input_name", InputName);
        yield return ("output_names", $"{LogitsName},{FeaturesName}");
        yield return ("input_shape", $"[batch, {config.InChannels}, {config.InputSize}, {config.InputSize}] float32 NCHW");
        yield return ("input_normalization", "the graph expects normalised images: (pixel / 255 - mean) / std per channel");
        yield return ("normalization_mean", Floats(normalization.Mean));
        yield return ("normalization_std", Floats(normalization.Std));
        yield return ("dataset", dataset);
        yield return ("num_classes", config.NumClasses.ToString(CultureInfo.InvariantCulture));
        yield return ("condensenet_config", JsonSerializer.Serialize(config));
    }
}
