namespace CondenseCluster.Shared.Model;

/// <summary>Parameters and multiply-adds (batch 1) of one part of the network.</summary>
public sealed record CostRow(string Name, long Parameters, long Flops);

/// <summary>
/// Counts parameters and FLOPs with the paper's convention (DESIGN.md §1.3a): a learned group conv counts 1/C of its
/// weights and multiply-adds, ReLU one op per input element, average pooling channels·Hout·Wout·k², Linear weights + biases,
/// BatchNorm no ops. Computed from the configuration, so it needs no tensors.
/// </summary>
public static class ModelCost
{
    public static IReadOnlyList<CostRow> PerBlock(CondenseNetConfig c, ModelForm form)
    {
        c.Validate();
        var rows = new List<CostRow>();
        int size = c.InputSize / c.InitStride, stem = 2 * c.Growth[0];
        rows.Add(new("init_conv", (long)c.InChannels * stem * 9, (long)c.InChannels * stem * 9 * size * size));

        foreach (var block in c.DenseLayers().GroupBy(d => d.Block))
        {
            int b = block.Key;
            long parameters = 0, flops = 0, area = (long)size * size;
            foreach (var (channels, k, bottleneck) in block.Select(d => (d.InChannels, d.Growth, d.Bottleneck)))
            {
                // conv_1: BN over the inputs it sees (all of them, or the gathered in·G/C), ReLU, conv with 1/C of the weights.
                long seen = form == ModelForm.Training ? channels : (long)channels * c.Group1x1 / c.CondenseFactor;
                parameters += 2 * seen + (long)channels * bottleneck / c.CondenseFactor;
                flops += seen * area + (long)channels * bottleneck * area / c.CondenseFactor;
                // conv_2: BN, ReLU, 3x3 group conv.
                parameters += 2L * bottleneck + (long)bottleneck * k * 9 / c.Group3x3;
                flops += bottleneck * area + (long)bottleneck * k * 9 * area / c.Group3x3;
            }
            rows.Add(new($"denseblock_{b + 1}", parameters, flops));
            if (b < c.Stages.Length - 1)
            {
                size /= 2;
                rows.Add(new($"transition_{b + 1}", 0, (long)block.Last().OutChannels * size * size * 4));
            }
        }
        long final = c.FinalChannels, finalArea = (long)size * size;
        rows.Add(new("norm_last+pool", 2L * final, final * finalArea + final * finalArea));
        long inputs = form == ModelForm.Training ? final : final / 2;
        long linear = inputs * c.NumClasses + c.NumClasses;
        rows.Add(new("classifier", linear, linear));
        return rows;
    }

    public static CostRow Total(CondenseNetConfig c, ModelForm form)
    {
        var rows = PerBlock(c, form);
        return new("total", rows.Sum(r => r.Parameters), rows.Sum(r => r.Flops));
    }
}
