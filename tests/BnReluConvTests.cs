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

        // Running means and BN bias gradients can be near zero: closeness is taken at a scale of at least 1e-3.
        static void Close(Tensor expected, Tensor actual) => TensorAssert.Close(expected, actual, floor: 1e-3);
        Assert.True(output.is_contiguous(), "the block returns NCHW");
        Close(plain, output);
        Close(plainInput.grad!, input.grad!);
        Close(weight.grad!, parameters["conv.weight"].grad!);
        Close(normWeight.grad!, parameters["norm.weight"].grad!);
        Close(normBias.grad!, parameters["norm.bias"].grad!);
        Close(runningMean, buffers["norm.running_mean"]);
        Close(runningVar, buffers["norm.running_var"]);
    }
}
