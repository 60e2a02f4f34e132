using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace CondenseCluster.Tests;

/// <summary>
/// Training-mode BN → ReLU on CPU runs as one kernel (<see cref="BatchNormReluKernel"/>): its output, gradients and
/// running statistics must equal libtorch's batch_norm + relu, computed here in float64.
/// </summary>
public class BatchNormReluTests
{
    [Theory]
    [InlineData(64, 16, 32)]  // CondenseNet-86's first block at batch 64
    [InlineData(5, 33, 7)]    // a plane that is no multiple of the vector width, more channels than threads
    [InlineData(3, 2, 1)]     // 1x1 maps: three values per channel
    public void TheFusedKernelEqualsLibtorchBatchNormAndRelu(int images, int channels, int size)
    {
        torch.manual_seed(3);
        using var norm = new BatchNorm(channels);
        norm.train();
        using (torch.no_grad())
        {
            norm.Weight.uniform_(0.5, 1.5);
            norm.Bias.uniform_(-0.5, 0.5);
        }
        var input = (torch.randn(images, channels, size, size) * 3 + 1).requires_grad_();
        var upstream = torch.randn(images, channels, size, size);
        Assert.True(BatchNormReluFunction.Supports(input));

        var (expected, gradients, runningMean, runningVar) = Reference(input, upstream, norm, steps: 2);
        Tensor output = null!;
        for (int step = 0; step < 2; step++)
        {
            input.grad?.zero_();
            norm.Weight.grad?.zero_();
            norm.Bias.grad?.zero_();
            output = norm.ForwardRelu(input);
            output.backward([upstream]);
        }

        static void Close(Tensor expected, Tensor actual) => TensorAssert.Close(expected.to_type(ScalarType.Float32), actual, floor: 1e-3);
        Close(expected, output);
        Close(gradients[0], input.grad!);
        Close(gradients[1], norm.Weight.grad!);
        Close(gradients[2], norm.Bias.grad!);
        Close(runningMean, norm.RunningMean);
        Close(runningVar, norm.RunningVar);
        var counted = norm.named_buffers().Single(b => b.name == "num_batches_tracked").buffer;
        Assert.Equal(2L, counted.item<long>());
    }

    [Fact]
    public void ResultsDoNotDependOnTheNumberOfThreads()
    {
        var layout = new PlaneLayout(Images: 4, Channels: 11, Plane: 10);
        var random = new Random(5);
        float[] Values(long n, double scale) => Enumerable.Range(0, (int)n).Select(_ => (float)((random.NextDouble() - 0.4) * scale)).ToArray();
        var (x, dy) = (Values(layout.Length, 4), Values(layout.Length, 1));
        var (weight, bias) = (Values(layout.Channels, 2), Values(layout.Channels, 1));

        float[][] Run(int threads)
        {
            var (y, dx) = (new float[layout.Length], new float[layout.Length]);
            var (mean, invStd, variance, dWeight, dBias) = (new float[11], new float[11], new float[11], new float[11], new float[11]);
            BatchNormReluKernel.Forward(x, y, layout, weight, bias, mean, invStd, variance, threads);
            BatchNormReluKernel.Backward(x, dy, dx, layout, weight, bias, mean, invStd, dWeight, dBias, threads);
            return [y, dx, mean, invStd, variance, dWeight, dBias];
        }

        var one = Run(1);
        Assert.Contains(one[0], v => v == 0);   // the ReLU cut some values
        Assert.Contains(one[0], v => v > 0);
        foreach (int threads in new[] { 2, 3, 16 })
            Assert.Equal(one, Run(threads));
    }

    [Fact]
    public void InputsTheKernelDoesNotTakeGoThroughLibtorchWithTheSameResult()
    {
        torch.manual_seed(4);
        var nchw = torch.randn(4, 8, 5, 5);
        var channelsLast = nchw.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
        Assert.False(BatchNormReluFunction.Supports(channelsLast));
        Assert.False(BatchNormReluFunction.Supports(nchw.to_type(ScalarType.Float64)));

        using var fused = new BatchNorm(8);
        using var plain = new BatchNorm(8);
        var a = nchw.clone().requires_grad_();
        var b = channelsLast.detach().requires_grad_();
        var upstream = torch.randn(4, 8, 5, 5);
        fused.ForwardRelu(a).backward([upstream]);
        plain.ForwardRelu(b).backward([upstream]);
        TensorAssert.Close(a.grad!, b.grad!);
        TensorAssert.Close(fused.RunningVar, plain.RunningVar);
    }

    [Fact]
    public void BackwardLeavesNothingInTheCallersDisposeScope()
    {
        // A training step's scope lives until the step ends; tensors backward left there would keep every layer's
        // gradients alive until then.
        using var norm = new BatchNorm(6);
        var input = torch.randn(4, 6, 8, 8).requires_grad_();
        var upstream = torch.randn(4, 6, 8, 8);
        using var scope = torch.NewDisposeScope();
        var output = norm.ForwardRelu(input);
        int afterForward = scope.DisposablesCount;
        output.backward([upstream]);
        Assert.Equal(afterForward, scope.DisposablesCount);
        Assert.NotNull(input.grad);
    }

    [Fact]
    public void AMismatchedLayoutIsRefusedWithTheSizes()
    {
        var layout = new PlaneLayout(2, 3, 4);
        var error = Assert.Throws<ArgumentException>(() => BatchNormReluKernel.Forward(new float[23], new float[23], layout,
            new float[3], new float[3], new float[3], new float[3], new float[3], threads: 1));
        Assert.Contains("input has 23 values", error.Message);
        Assert.Contains("needs 24", error.Message);
    }

    /// <summary>libtorch's batch_norm + relu in float64 for a number of training steps; the last step's output and gradients.</summary>
    static (Tensor Output, Tensor[] Gradients, Tensor RunningMean, Tensor RunningVar) Reference(Tensor input, Tensor upstream, BatchNorm norm, int steps)
    {
        var x = input.detach().to_type(ScalarType.Float64).requires_grad_();
        var weight = norm.Weight.detach().to_type(ScalarType.Float64).requires_grad_();
        var bias = norm.Bias.detach().to_type(ScalarType.Float64).requires_grad_();
        var runningMean = norm.RunningMean.to_type(ScalarType.Float64);
        var runningVar = norm.RunningVar.to_type(ScalarType.Float64);
        Tensor output = null!;
        for (int step = 0; step < steps; step++)
        {
            foreach (var t in new[] { x, weight, bias }) t.grad?.zero_();
            output = nn.functional.relu(nn.functional.batch_norm(x, runningMean, runningVar, weight, bias, true, 0.1, 1e-5));
            output.backward([upstream.to_type(ScalarType.Float64)]);
        }
        return (output, [x.grad!, weight.grad!, bias.grad!], runningMean, runningVar);
    }
}
