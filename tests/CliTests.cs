using System.Text.Json;
using CondenseCluster.Bench;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;
using TorchSharp;
using Xunit;

namespace CondenseCluster.Tests;

/// <summary>The coordinator's <c>model</c> commands, run as a separate process the way a user runs them.</summary>
public class CliTests : TempFolderTest
{
    [Fact]
    public void ModelInfoPrintsEveryBlockAndThePapersTotals()
    {
        var (code, output) = Coordinator("model", "info", "--arch", "condensenet-86", "--converted");
        Assert.Equal(0, code);
        foreach (var block in new[] { "init_conv", "denseblock_1", "transition_1", "denseblock_2", "transition_2", "denseblock_3", "classifier" })
            Assert.Contains(block, output);
        Assert.Contains("516,202 (0.52M)", output);
        Assert.Contains("65,812,394 (65.81M)", output);
    }

    [Fact]
    public void ModelInfoForImageNetC8()
    {
        var (code, output) = Coordinator("model", "info", "--arch", "condensenet-74-c8", "--dataset", "imagenet", "--converted");
        Assert.Equal(0, code);
        Assert.Contains("(2.94M)", output);
        Assert.Contains("(274.", output);
    }

    [Fact]
    public void ImageNetAtAReducedImageSizeKeepsTheArchitectureOnSmallerMaps()
    {
        var (code, output) = Coordinator("model", "info", "--arch", "condensenet-74-c4", "--dataset", "imagenet", "--image-size", "64");
        Assert.True(code == 0, output);
        Assert.Contains("condensenet-74-c4", output);
        Assert.Contains("3x64x64 input, 1000 classes", output);
    }

    [Theory]
    [InlineData("imagenet", "50", "error: input size 50 with stem stride 2 cannot be halved 4 times between blocks; use a multiple of 32")]
    [InlineData("cifar10", "64", "error: --image-size applies to imagenet only; cifar10 images have a fixed size (32x32)")]
    public void AnImageSizeTheModelCannotTakeIsOneClearErrorLine(string dataset, string size, string message)
    {
        var (code, output) = Coordinator("model", "info", "--arch", "condensenet-74-c4", "--dataset", dataset, "--image-size", size);
        Assert.Equal(1, code);
        Assert.Contains(message, output);
        Assert.DoesNotContain("   at ", output);
    }

    [Fact]
    public void AnUnknownGradientPrecisionIsOneClearErrorLine()
    {
        var (code, output) = Coordinator(["train", "--gradient-precision", "fp8", .. Cluster.ClusterProcesses.FreeControlPorts, "--port", "0"]);
        Assert.Equal(1, code);
        Assert.Contains("error: --gradient-precision fp8 is not fp32 or fp16", output);
        Assert.DoesNotContain("   at ", output);
    }

    [Fact]
    public void ANegativeCheckpointIntervalInMinutesIsOneClearErrorLineBeforeAnyClusterStarts()
    {
        var (code, output) = Coordinator(["train", "--checkpoint-every-minutes", "-5", .. Cluster.ClusterProcesses.FreeControlPorts, "--port", "0"]);
        Assert.Equal(1, code);
        Assert.Contains("error: --checkpoint-every-minutes -5 must be a finite number of minutes, at least 0 (0: no timed checkpoints)", output);
        Assert.DoesNotContain("control API at", output);
        Assert.DoesNotContain("   at ", output);
    }

    [Fact]
    public void ResumeIfPresentLeavesAFinishedRunAloneWithoutStartingACluster()
    {
        string run = Path.Combine(Folder, "run");
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "model-trained.ccm"), "the run's end");
        var (code, output) = Coordinator(["train", "--resume-if-present", run, .. Cluster.ClusterProcesses.FreeControlPorts, "--port", "0"]);
        Assert.Equal(0, code);
        Assert.Contains($"the run in {run} has finished (its model-trained.ccm is written): nothing to resume", output);
        Assert.DoesNotContain("control API at", output);
    }

    [Fact]
    public void AnInvalidConfigurationIsOneClearErrorLine()
    {
        var (code, output) = Coordinator("model", "info", "--groups", "3");
        Assert.Equal(1, code);
        Assert.Contains("error: features.denseblock_1.denselayer_1.conv_1: 16 input channels are not divisible by G1x1=3", output);
        Assert.DoesNotContain("   at ", output); // no stack trace
    }

    [Fact]
    public void ConvertWritesAConvertedModelThatLoadsOnItsOwn()
    {
        torch.manual_seed(4);
        using var model = new CondenseNet(TinyModels.Reference);
        foreach (double p in new[] { 0.2, 0.34, 0.5 }) ModelCondensing.Apply(model, p);
        string input = Path.Combine(Folder, "trained.ccm"), native = Path.Combine(Folder, "converted.ccm"), pytorch = Path.Combine(Folder, "converted.pt");
        ModelFile.Save(model, input);

        var (code, output) = Coordinator("model", "convert", "--in", input, "--out", native);
        Assert.True(code == 0, output);
        Assert.Contains("features of the two forms agree", output);
        using var converted = ModelFile.Load(native);
        Assert.Equal(ModelForm.Converted, converted.Form);
        using var expected = Conversion.Convert(model);
        foreach (var (name, tensor) in expected.state_dict())
            Assert.True(Tensors.Identical(tensor, converted.state_dict()[name]), name);

        (code, output) = Coordinator("model", "convert", "--in", input, "--out", pytorch);
        Assert.True(code == 0, output);
        using var fromPyTorch = PyTorchStateDict.Import(pytorch, TinyModels.Reference, ModelForm.Converted);
    }

    [Fact]
    public void ConvertRefusesATruncatedModelFile()
    {
        string input = Path.Combine(Folder, "broken.ccm");
        using (var model = new CondenseNet(TinyModels.Reference)) ModelFile.Save(model, input);
        var bytes = File.ReadAllBytes(input);
        File.WriteAllBytes(input, bytes[..^100]);
        var (code, output) = Coordinator("model", "convert", "--in", input, "--out", Path.Combine(Folder, "out.ccm"));
        Assert.Equal(1, code);
        Assert.Contains("truncated", output);
        Assert.False(File.Exists(Path.Combine(Folder, "out.ccm")));
    }

    [Fact]
    public void TrainLocalShowsProgressWritesMetricsAndEndsWithASummary()
    {
        string output = Path.Combine(Folder, "run");
        var (code, text) = Coordinator("train", "--local", "--stages", "2,2", "--growth", "4,8", "--data", BundledData.FashionMnistSubset,
            "--epochs", "1", "--recovery-steps", "20", "--recovery-samples", "500", "--ema", "0.99", "--out", output);
        Assert.True(code == 0, text);
        Assert.Contains("step 93/93 (100 %)", text);               // plain progress lines without a terminal
        Assert.Contains("converted + recovery", text);  // the summary table
        var types = RunEvents.Lines(output).Select(line => line.GetProperty("type").GetString()).ToList();
        Assert.Equal(93, types.Count(t => t == "step"));
        Assert.Equal(["start", "epoch", "summary"], types.Where(t => t is "start" or "epoch" or "summary"));
        Assert.Equal("glibc malloc without mmap, trim threshold 1024 MiB, one arena", RunEvents.Lines(output, "start")[0].As<RunStarted>().Allocator);
        Assert.Contains(RunEvents.Of<CondensingStage>(output), c => c is { Stage: 3, FinalStage: 3, Step: 47 });
        Assert.True(File.Exists(Path.Combine(output, "model-converted.pt")));

        // model eval on the saved models gives the accuracies the summary printed: the masked model's, and the converted
        // model's after the classifier recovery (the state it was saved in), from both of its files.
        var summary = RunEvents.Lines(output, "summary")[0].As<TrainingSummary>();
        JsonElement[] Evaluate(string file, params string[] extra)
        {
            var (evalCode, evalText) = Coordinator(["model", "eval", "--in", Path.Combine(output, file), "--stages", "2,2", "--growth", "4,8",
                "--data", BundledData.FashionMnistSubset, "--json", .. extra]);
            Assert.True(evalCode == 0, evalText);
            return [.. evalText.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonDocument.Parse(line).RootElement)];
        }
        var trained = Evaluate("model-trained.ccm", "--convert");
        Assert.Equal(["masked (training form)", "converted (compiled)"], trained.Select(e => e.GetProperty("form").GetString()));
        Assert.Equal(summary.Masked!.Value.Top1, trained[0].GetProperty("Top1").GetDouble(), 6);
        Assert.Equal(summary.OfficialConverted!.Value.Top1, trained[1].GetProperty("Top1").GetDouble(), 6);
        Assert.Equal(1000, trained[0].GetProperty("Samples").GetInt32());
        foreach (var converted in new[] { "model-converted.ccm", "model-converted.pt" })
            Assert.Equal(summary.Recovered!.Value.Top1, Assert.Single(Evaluate(converted)).GetProperty("Top1").GetDouble(), 6);
        // ... and from the ONNX graph written beside them, run by ONNX Runtime.
        Assert.Equal(summary.Recovered!.Value.Top1, OnnxTop1(Path.Combine(output, "model-converted.onnx")), 6);
        // The weight average (--ema) was evaluated and exported beside them, masked and converted.
        var average = Evaluate("model-ema-trained.ccm", "--convert");
        Assert.Equal(summary.Average!.Masked.Top1, average[0].GetProperty("Top1").GetDouble(), 6);
        Assert.Equal(summary.Average.Converted.Top1, average[1].GetProperty("Top1").GetDouble(), 6);
        Assert.Equal(summary.Average.Converted.Top1, Assert.Single(Evaluate("model-ema-converted.pt")).GetProperty("Top1").GetDouble(), 6);
        Assert.Equal(summary.Average, Assert.Single(RunEvents.Of<AverageEvaluated>(output)).Average);
        Assert.Contains("EMA 0.99 top-1", text);
    }

    [Fact]
    public void AControlPortInUseIsOneClearErrorLine()
    {
        using var holder = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        holder.Start();
        string port = ((System.Net.IPEndPoint)holder.LocalEndpoint).Port.ToString();
        var (code, output) = Coordinator("serve", "--api-port", port, "--dashboard-port", "0", "--port", "0", "--local-workers", "0");
        Assert.Equal(1, code);
        Assert.Contains($"error: 127.0.0.1:{port} is already in use", output);
        Assert.Contains("--api-port", output);
        Assert.DoesNotContain("   at ", output);
    }

    static (int Code, string Output) Coordinator(params string[] args) => CoordinatorProgram.Run(args);

    /// <summary>Top-1 of an exported ONNX model on the bundled Fashion-MNIST test images, in batches of 100.</summary>
    static double OnnxTop1(string path)
    {
        var test = FashionMnist.Open(BundledData.FashionMnistSubset, _ => { }).Test;
        using var onnx = new OnnxRuntimeModel(path, Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_ALL, threads: 1);
        int pixels = test.Size * test.Size, batch = 100, correct = 0;
        var images = new float[batch * pixels];
        for (int start = 0; start < test.Count; start += batch)
        {
            for (int i = 0; i < batch; i++) test.Read(start + i, images.AsSpan(i * pixels, pixels), augmentation: null);
            var logits = onnx.Run(images, [batch, 1, test.Size, test.Size]).Logits;
            int classes = logits.Length / batch;
            for (int i = 0; i < batch; i++)
            {
                var row = logits.AsSpan(i * classes, classes);
                if (row.IndexOf(row.ToArray().Max()) == test.Label(start + i)) correct++;
            }
        }
        return correct / (double)test.Count;
    }
}
