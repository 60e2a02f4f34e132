using BenchmarkDotNet.Attributes;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace CondenseCluster.Bench.MicroBenchmarks;

/// <summary>
/// What the mask costs in training: forward + backward of a learned group convolution in training form (BN, ReLU, then a
/// 1x1 convolution with weight·mask on every forward) against a plain BN-ReLU-conv 1x1 of the same shape. 512 inputs and
/// 4·32 outputs are conv_1 of features.denseblock_3.denselayer_6 of CondenseNet-86, whose maps are 8x8 on 32x32 inputs;
/// 16x16 is the map size of block 2.
/// </summary>
public class LearnedGroupConvBenchmark
{
    const int BatchSize = 64, InChannels = 512, OutChannels = 4 * 32, Groups = 4, CondenseFactor = 4;

    [Params(8, 16)]
    public int MapSize { get; set; }

    LearnedGroupConv learned = null!;
    BnReluConv plain = null!;
    Tensor input = null!, outputGradient = null!;

    [GlobalSetup]
    public void Setup()
    {
        TorchRuntime.SetThreads(MicroSuite.TorchThreads);
        torch.manual_seed(0);
        learned = new LearnedGroupConv(InChannels, OutChannels, Groups, CondenseFactor, dropoutRate: 0);
        plain = new BnReluConv(InChannels, OutChannels, kernelSize: 1, padding: 0, groups: 1);
        learned.train();
        plain.train();
        // The input's gradient is computed too: in a dense block it flows on to every earlier layer.
        input = torch.randn(BatchSize, InChannels, MapSize, MapSize).requires_grad_();
        outputGradient = torch.randn(BatchSize, OutChannels, MapSize, MapSize);
    }

    [Benchmark(Baseline = true)]
    public void PlainConv() => ForwardBackward(plain);

    [Benchmark]
    public void LearnedGroupConv() => ForwardBackward(learned);

    void ForwardBackward(nn.Module<Tensor, Tensor> layer)
    {
        using var scope = torch.NewDisposeScope();
        layer.forward(input).backward([outputGradient]);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        learned.Dispose();
        plain.Dispose();
        input.Dispose();
        outputGradient.Dispose();
    }
}
