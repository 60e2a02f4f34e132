using CondenseCluster.Bench;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Export;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using Microsoft.ML.OnnxRuntime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace CondenseCluster.Tests;

/// <summary>
/// The exported ONNX graph, run by ONNX Runtime (CPU), computes our converted model's logits and the masked model's
/// features, on real images; the onnx checker accepts it; bad requests are refused with the fix.
/// </summary>
public class OnnxExportTests(ITestOutputHelper log)
{
    static readonly Lazy<IImageDataset> FashionMnistTest = new(() => FashionMnist.Open(BundledData.FashionMnistSubset, _ => { }).Test);

    /// <summary>
    /// condensenet-86 on the whole bundled Fashion-MNIST test subset (1,000 images, 1 channel; about 15 s on 2 cores),
    /// on a CIFAR-shaped batch (the same real images in 3 channels), and a CondenseNet-74 with ImageNet's stem at 64x64
    /// (the images in 3 channels, each pixel doubled). Batch 1, then the dynamic batch.
    /// </summary>
    [Theory]
    [InlineData("condensenet-86", "fashion-mnist", 1000)]
    [InlineData("condensenet-86", "cifar10", 32)]
    [InlineData("condensenet-74-c4", "imagenet", 8)]
    public void OnnxRuntimeGivesOurLogitsAndTop1AndTheMaskedModelsFeatures(string arch, string dataset, int count)
    {
        var config = CondenseNetConfig.Preset(arch, dataset);
        if (dataset == "imagenet") config = config with { InputSize = 64 };
        using var masked = TinyModels.FullyCondensed(config, seed: 5);
        using var converted = Conversion.Convert(masked);
        masked.eval();
        converted.eval();
        using var compiled = CondensedInference.Compile(converted, new(CondensedInference.Pointwise.GroupedConv, CondensedInference.Spatial.Grouped));
        string path = Exported(converted, new OnnxExportOptions());
        var (images, labels) = RealImages(config, count);
        using var onnx = new OnnxRuntimeModel(path, GraphOptimizationLevel.ORT_ENABLE_ALL, threads: torch.get_num_threads());
        using var _ = torch.no_grad();

        using (var scope = torch.NewDisposeScope())
        {
            var first = images.narrow(0, 0, 1);
            var (logits, _) = onnx.Run(first.data<float>().ToArray(), first.shape);
            Report("batch 1 logits vs compiled", compiled.Forward(first), Tensor(logits, 1));
        }

        int chunk = Math.Min(count, 100);
        var oursTop1 = new List<long>();
        var onnxTop1 = new List<long>();
        for (int start = 0; start < count; start += chunk)
        {
            using var scope = torch.NewDisposeScope(); // the models' intermediates, freed per chunk rather than by the GC
            var batch = images.narrow(0, start, chunk);
            var (logits, features) = onnx.Run(batch.data<float>().ToArray(), batch.shape);
            var onnxLogits = Tensor(logits, chunk);
            var ours = compiled.Forward(batch);
            Report($"batch {chunk} logits vs compiled", ours, onnxLogits);
            if (start == 0)
            {
                Report($"batch {chunk} logits vs converted", converted.forward(batch), onnxLogits);
                // The masked model runs dense 1x1 convolutions: a few images suffice to compare features.
                const int few = 8;
                Report($"first {few} images' features vs masked model", masked.Features(batch.narrow(0, 0, few)), Tensor(features, chunk).narrow(0, 0, few));
            }
            oursTop1.AddRange(ours.argmax(1).data<long>().ToArray());
            onnxTop1.AddRange(onnxLogits.argmax(1).data<long>().ToArray());
        }
        Assert.Equal(oursTop1, onnxTop1);
        double Accuracy(List<long> predicted) => predicted.Zip(labels, (p, l) => p == l ? 1.0 : 0).Average();
        log.WriteLine($"{arch} {dataset}: top-1 on {count} test images, ONNX Runtime {Accuracy(onnxTop1):P2}, ours {Accuracy(oursTop1):P2}");
        Assert.Equal(Accuracy(oursTop1), Accuracy(onnxTop1));
    }

    [Theory]
    [InlineData(13)]
    [InlineData(17)]
    public void TheOnnxCheckerAcceptsTheGraphInFullCheck(int opset)
    {
        using var converted = TinyConverted();
        string path = Exported(converted, new OnnxExportOptions(opset));
        // Debian's python3-onnx (1.12): .ci/run installs it; the pyenv python has no onnx.
        var (code, output, errors) = ChildProcess.Run("/usr/bin/python3",
            ["-c", "import onnx, sys; m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print(m.ir_version, m.opset_import[0].version)", path],
            limit: TimeSpan.FromMinutes(2));
        Assert.True(code == 0, $"onnx.checker refused the graph: {errors}");
        Assert.Equal($"{(opset <= 14 ? 7 : 8)} {opset}", output.Trim());
    }

    [Theory]
    [InlineData(13)]
    [InlineData(21)]
    public void TheLowestAndHighestSupportedOpsetsRunInOnnxRuntime(int opset)
    {
        using var converted = TinyConverted();
        string path = Exported(converted, new OnnxExportOptions(opset));
        using var onnx = new OnnxRuntimeModel(path, GraphOptimizationLevel.ORT_DISABLE_ALL, threads: 1);
        using var x = torch.randn(3, 3, 16, 16);
        using var expected = converted.forward(x);
        TensorAssert.Close(expected, Tensor(onnx.Run(x.data<float>().ToArray(), x.shape).Logits, 3), relative: 1e-4);
    }

    [Fact]
    public void AFixedBatchIsInTheGraphAndTheMetadataNamesInputsNormalisationAndClasses()
    {
        using var converted = TinyConverted();
        string path = Exported(converted, new OnnxExportOptions(Batch: 2));
        using var session = new InferenceSession(path);
        Assert.Equal([2, 3, 16, 16], session.InputMetadata[OnnxExport.InputName].Dimensions);
        Assert.Equal([2, 10], session.OutputMetadata[OnnxExport.LogitsName].Dimensions);
        var metadata = session.ModelMetadata.CustomMetadataMap;
        Assert.Equal("cifar10", metadata["dataset"]);
        Assert.Equal("0.4914,0.4824,0.4467", metadata["normalization_mean"]);
        Assert.Equal("0.2471,0.2435,0.2616", metadata["normalization_std"]);
        Assert.Equal("10", metadata["num_classes"]);
        Assert.Equal("images", metadata["input_name"]);

        using var onnx = new OnnxRuntimeModel(path, GraphOptimizationLevel.ORT_ENABLE_ALL, threads: 1);
        Assert.ThrowsAny<OnnxRuntimeException>(() => onnx.Run(new float[3 * 3 * 16 * 16], [3, 3, 16, 16]));
    }

    [Fact]
    public void ATrainingFormModelAnUnknownLayerAndBadSettingsAreRefusedWithTheFix()
    {
        using var trained = TinyModels.FullyCondensed(TinyModels.Config(), seed: 2);
        Assert.Contains("convert it first", Assert.Throws<ArgumentException>(() => OnnxExport.Build(trained, new OnnxExportOptions())).Message);

        using var converted = Conversion.Convert(trained);
        Assert.Contains("choose 13 to 21", Assert.Throws<ArgumentException>(() => OnnxExport.Build(converted, new OnnxExportOptions(Opset: 9))).Message);
        Assert.Contains("'dynamic' or a positive batch size", Assert.Throws<ArgumentException>(() => OnnxExport.ParseBatch("0")).Message);
        Assert.Equal(4, OnnxExport.ParseBatch("4"));
        Assert.Null(OnnxExport.ParseBatch("dynamic"));
        using var oddInput = new CondenseNet(TinyModels.Config() with { InChannels = 2 }, ModelForm.Converted);
        Assert.Contains("--dataset", Assert.Throws<ArgumentException>(() => OnnxExport.Build(oddInput, new OnnxExportOptions())).Message);

        converted.register_module("extra", nn.Dropout2d());
        var unknown = Assert.Throws<NotSupportedException>(() => OnnxExport.Build(converted, new OnnxExportOptions()));
        Assert.Contains("layer 'extra' (Dropout2d)", unknown.Message);
    }

    [Fact]
    public void ModelExportWritesOnnxFromAConvertedModelAndRefusesOneNotFullyCondensed()
    {
        string folder = Directory.CreateTempSubdirectory("onnx-cli").FullName;
        using var trained = TinyModels.FullyCondensed(TinyModels.Config(), seed: 4);
        using var converted = Conversion.Convert(trained);
        converted.eval();
        ModelFile.Save(converted, Path.Combine(folder, "model-converted.ccm"));
        var (code, text) = CoordinatorProgram.Run("model", "export", "--in", Path.Combine(folder, "model-converted.ccm"), "--format", "onnx",
            "--out", Path.Combine(folder, "model.onnx"), "--opset", "15", "--batch", "1");
        Assert.True(code == 0, text);
        using (var onnx = new OnnxRuntimeModel(Path.Combine(folder, "model.onnx"), GraphOptimizationLevel.ORT_ENABLE_ALL, threads: 1))
        using (var x = torch.randn(1, 3, 16, 16))
        using (var expected = converted.forward(x))
            TensorAssert.Close(expected, Tensor(onnx.Run(x.data<float>().ToArray(), x.shape).Logits, 1), relative: 1e-4);

        var (badOpset, badOpsetText) = CoordinatorProgram.Run("model", "export", "--in", Path.Combine(folder, "model-converted.ccm"),
            "--out", Path.Combine(folder, "bad.onnx"), "--opset", "22");
        Assert.NotEqual(0, badOpset);
        Assert.Contains("opset 22 is not supported", badOpsetText);

        using var halfway = new CondenseNet(TinyModels.Config());
        ModelCondensing.Apply(halfway, 0.2);
        ModelFile.Save(halfway, Path.Combine(folder, "model-trained.ccm"));
        var (notCondensed, notCondensedText) = CoordinatorProgram.Run("model", "export", "--in", Path.Combine(folder, "model-trained.ccm"),
            "--out", Path.Combine(folder, "halfway.onnx"));
        Assert.NotEqual(0, notCondensed);
        Assert.Contains("only a model trained past progress 0.5", notCondensedText);
        Assert.False(File.Exists(Path.Combine(folder, "halfway.onnx")));
    }

    /// <summary>The model exported to a new temporary file; its path.</summary>
    static string Exported(CondenseNet converted, OnnxExportOptions options)
    {
        string path = Path.Combine(Directory.CreateTempSubdirectory("onnx").FullName, "model.onnx");
        OnnxExport.Save(converted, path, options);
        return path;
    }

    static CondenseNet TinyConverted()
    {
        using var trained = TinyModels.FullyCondensed(TinyModels.Config(), seed: 3);
        var converted = Conversion.Convert(trained);
        converted.eval();
        return converted;
    }

    /// <summary>
    /// The first <paramref name="count"/> bundled Fashion-MNIST test images, normalised as the loader gives them, shaped
    /// for <paramref name="config"/>: as they are for one channel, else repeated over three channels and, for a larger
    /// input, each pixel repeated.
    /// </summary>
    static (Tensor Images, long[] Labels) RealImages(CondenseNetConfig config, int count)
    {
        var data = FashionMnistTest.Value;
        int size = data.Size, pixels = size * size;
        var values = new float[count * pixels];
        for (int i = 0; i < count; i++) data.Read(i, values.AsSpan(i * pixels, pixels), augmentation: null);
        var images = torch.tensor(values, [count, 1, size, size]);
        if (config.InChannels != 1) images = images.expand(count, config.InChannels, size, size);
        int repeat = config.InputSize / size;
        if (repeat > 1) images = images.repeat_interleave(repeat, 2).repeat_interleave(repeat, 3);
        return (images.contiguous(), Enumerable.Range(0, count).Select(i => (long)data.Label(i)).ToArray());
    }

    static Tensor Tensor(float[] values, long rows) => torch.tensor(values, [rows, values.Length / rows]);

    /// <summary>Asserts ONNX Runtime's values equal ours to 1e-4 of their scale and logs the largest difference.</summary>
    void Report(string what, Tensor ours, Tensor onnx)
    {
        double difference = (ours - onnx).abs().max().item<float>(), scale = ours.abs().max().item<float>();
        log.WriteLine($"{what}: max |difference| {difference:E2} (largest |value| {scale:F3})");
        TensorAssert.Close(ours, onnx, relative: 1e-4);
    }
}
