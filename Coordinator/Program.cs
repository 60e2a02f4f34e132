using CondenseCluster.Shared.Model;
foreach (var (a, d) in new[] { ("condensenet-86", "cifar10"), ("condensenet-182", "cifar10"), ("condensenet-74-c4", "imagenet"), ("condensenet-74-c8", "imagenet") })
{
    var c = CondenseNetConfig.Preset(a, d);
    var t = ModelCost.Total(c, ModelForm.Training); var v = ModelCost.Total(c, ModelForm.Converted);
    Console.WriteLine($"{a}: train {t.Parameters/1e6:F3}M {t.Flops/1e6:F1}M  conv {v.Parameters/1e6:F3}M {v.Flops/1e6:F1}M");
}
var m = new CondenseNet(CondenseNetConfig.Preset("condensenet-86", "cifar10"));
foreach (var (k, t) in m.state_dict().Take(12)) Console.WriteLine($"{k} {string.Join(",", t.shape)} {t.dtype}");
Console.WriteLine(m.state_dict().Count + " keys; params " + m.parameters().Sum(p => p.numel()));
var x = TorchSharp.torch.randn(2, 3, 32, 32);
Console.WriteLine(string.Join(",", m.forward(x).shape));
