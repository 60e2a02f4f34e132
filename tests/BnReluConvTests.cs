using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;

namespace CondenseCluster.Tests;

/// <summary>
/// <see cref="BnReluConv"/> runs a CPU group convolution channels-last: in training mode its output, every gradient
/// and the BatchNorm running statistics must equal the plain NCHW computation of the same block.
/// </summary>
public class BnReluConvTests
{
    [Theory]
    [InlineData(32, 8, 4, 16)]  // CondenseNet-86's first block: thin groups
    [InlineData(64, 16, 4, 8)]
    [InlineData(32, 8, 8, 7)]   // an odd map size, G=8
    public void TheChannelsLastGroupConvolutionEqualsThePlainOne(int inChannels, int outChannels, int groups, int size)
    {
        torch.manual_seed(11);
        using var block = new BnReluConv(inChannels, outChannels, kernelSize: 3, padding: 1, groups);
        block.train();
        var parameters = block.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var buffers = block.named_buffers().ToDictionary(b => b.name, b => b.buffer);
        using (torch.no_grad())
        {
            parameters["norm.weight"].uniform_(0.5, 1.5);
            parameters["norm.bias"].uniform_(-0.5, 0.5);
        }
        var input = (torch.randn(3, inChannels, size, size) * 2 + 0.3).requires_grad_();
        var upstream = torch.randn(3, outChannels, size, size);

        // The plain computation, on copies of the parameters and running statistics.
        var weight = parameters["conv.weight"].detach().clone().requires_grad_();
        var normWeight = parameters["norm.weight"].detach().clone().requires_grad_();
        var normBias = parameters["norm.bias"].detach().clone().requires_grad_();
        var runningMean = buffers["norm.running_mean"].clone();
        var runningVar = buffers["norm.running_var"].clone();
        var plainInput = input.detach().clone().requires_grad_();
        var plain = nn.functional.conv2d(
            nn.functional.relu(nn.functional.batch_norm(plainInput, runningMean, runningVar, normWeight, normBias, true, 0.1, 1e-5)),
            weight, padding: [1, 1], groups: groups);
        plain.backward([upstream]);

        var output = block.forward(input);
        output.backward([upstream]);

        Assert.True(output.is_contiguous(), "the block returns NCHW");
        AssertClose(plain, output);
        AssertClose(plainInput.grad!, input.grad!);
        AssertClose(weight.grad!, parameters["conv.weight"].grad!);
        AssertClose(normWeight.grad!, parameters["norm.weight"].grad!);
        AssertClose(normBias.grad!, parameters["norm.bias"].grad!);
        AssertClose(runningMean, buffers["norm.running_mean"]);
        AssertClose(runningVar, buffers["norm.running_var"]);
    }

    static void AssertClose(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        double scale = Math.Max(expected.abs().max().item<float>(), 1e-3);
        double error = (expected - actual).abs().max().item<float>();
        Assert.True(error <= 1e-5 * scale, $"max difference {error:E2} against a largest value of {scale:E2}");
    }
}
