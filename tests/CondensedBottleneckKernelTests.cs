using CondenseCluster.Shared.Model;
using TorchSharp;
using static TorchSharp.torch;
using Xunit;
using static CondenseCluster.Shared.Model.TensorSpans;

namespace CondenseCluster.Tests;

/// <summary>
/// The compiled inference's C# kernels against the same computation in libtorch, in float64, on shapes the whole-model
/// tests do not reach: planes that are no multiple of the vector width, output rows short of a block, and inputs too
/// many for one tile.
/// </summary>
public class CondensedBottleneckKernelTests
{
    [Theory]
    [InlineData(2, 25, 3, 5, 12, 1)]   // 5x5 planes: a 9-column tail; 12 rows per group: one block of 8 and 4 single rows
    [InlineData(2, 100, 2, 300, 8, 2)] // 300 inputs per group: the plane spans three tiles
    [InlineData(1, 64, 4, 6, 8, 3)]    // batch 1, CondenseNet-86's last block's plane
    public void TheBottleneckKernelEqualsGatherNormProductAndShuffle(int images, int plane, int groups, int inputsPerGroup, int outputsPerGroup, int threads)
    {
        var shape = new BottleneckShape(images, plane, groups, inputsPerGroup, outputsPerGroup);
        torch.manual_seed(11);
        int channels = shape.Inputs + 3;
        using var block = torch.randn(channels, shape.Row);
        using var index = torch.randint(channels, shape.Inputs, dtype: ScalarType.Int64); // repeats, as groups may share inputs
        using var scale = torch.rand(shape.Inputs) + 0.5;
        using var shift = torch.randn(shape.Inputs) * 0.3;
        using var weight = torch.randn(shape.Outputs, inputsPerGroup) / Math.Sqrt(inputsPerGroup);
        using var bias = torch.randn(shape.Outputs) * 0.1;
        using var output = torch.empty(images, shape.Outputs, plane);

        CondensedBottleneckKernel.Run(Floats(block), Longs(index), Floats(scale), Floats(shift), Floats(weight), Floats(bias),
            Floats(output), shape, threads);

        using var scope = torch.NewDisposeScope();
        var d = ScalarType.Float64;
        var gathered = torch.addcmul(shift.to_type(d).unsqueeze(1), block.to_type(d).index_select(0, index), scale.to_type(d).unsqueeze(1), 1).relu();
        var rows = torch.bmm(weight.to_type(d).view(groups, outputsPerGroup, inputsPerGroup), gathered.view(groups, inputsPerGroup, -1))
            .add(bias.to_type(d).view(groups, outputsPerGroup, 1)).relu();
        // Row g·(out/G) + k is channel k·G + g of each image.
        var expected = rows.view(groups, outputsPerGroup, images, plane).permute(2, 1, 0, 3).reshape(images, shape.Outputs, plane);
        TensorAssert.Close(expected.to_type(ScalarType.Float32), output, floor: 1e-4);
    }

    [Fact]
    public void GatherEvalEqualsIndexSelectScaleShiftAndRelu()
    {
        torch.manual_seed(12);
        using var x = torch.randn(7, 37);
        using var rows = torch.tensor(new long[] { 6, 0, 0, 3, 5 });
        using var scale = torch.randn(5);
        using var shift = torch.randn(5);
        using var y = torch.empty(5, 37);
        BatchNormReluKernel.GatherEval(Floats(x), 37, Longs(rows), Floats(scale), Floats(shift), Floats(y), threads: 2);
        using var expected = torch.addcmul(shift.unsqueeze(1), x.index_select(0, rows), scale.unsqueeze(1), 1).relu();
        TensorAssert.Close(expected, y);
    }

    [Fact]
    public void AChannelOutsideTheBlockIsRefusedByName()
    {
        var shape = new BottleneckShape(Images: 1, Plane: 4, Groups: 1, InputsPerGroup: 2, OutputsPerGroup: 1);
        var error = Assert.Throws<ArgumentException>(() => CondensedBottleneckKernel.Run(new float[8], [0, 2], new float[2], new float[2],
            new float[2], new float[1], new float[4], shape, threads: 1));
        Assert.Contains("index names channel 2, outside x's 2", error.Message);

        var rowError = Assert.Throws<ArgumentException>(() => BatchNormReluKernel.GatherEval(new float[8], 4, [1, -1], new float[2], new float[2], new float[8], 1));
        Assert.Contains("row -1 is outside x's 2 rows", rowError.Message);
    }}
