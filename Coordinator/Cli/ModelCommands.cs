using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Export;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;
using Spectre.Console;
using TorchSharp;

namespace CondenseCluster.Coordinator.Cli;

/// <summary><c>model info</c>, <c>model convert</c>, <c>model eval</c> and <c>model export</c>.</summary>
static class ModelCommands
{
    public static Command Create()
    {
        var model = new Command("model", "inspect, convert and evaluate CondenseNet models");
        model.Subcommands.Add(Info());
        model.Subcommands.Add(Convert());
        model.Subcommands.Add(Evaluate());
        model.Subcommands.Add(Export());
        return model;
    }

    static Command Info()
    {
        var options = new ModelOptions();
        var converted = new Option<bool>("--converted") { Description = "count the converted (deployable) model instead of the training form" };
        var command = new Command("info", "parameters and FLOPs (multiply-adds, batch 1) per block and in total");
        foreach (var option in options.All) command.Options.Add(option);
        command.Options.Add(converted);
        command.SetAction(result =>
        {
            var config = options.Build(result);
            var form = result.GetValue(converted) ? ModelForm.Converted : ModelForm.Training;
            var console = AnsiConsole.Console;
            console.MarkupLine($"[bold]{Markup.Escape(options.Describe(result))}[/], {form.ToString().ToLowerInvariant()} form: {Markup.Escape(config.ToString())}");
            console.Write(CostTable(ModelCost.PerBlock(config, form), ModelCost.Total(config, form)));
            return 0;
        });
        return command;
    }

    static Command Convert()
    {
        var options = new ModelOptions();
        var input = new Option<FileInfo>("--in") { Description = "training-form model: a native .ccm file, or a PyTorch state dict (.pt/.pth, with --arch/--dataset)", Required = true };
        var output = new Option<FileInfo>("--out") { Description = "converted model: native .ccm, a PyTorch state dict when it ends with .pt/.pth, ONNX when it ends with .onnx", Required = true };
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var command = new Command("convert", "convert a fully condensed training-form model into the deployable condensed model");
        foreach (var option in options.All) command.Options.Add(option);
        command.Options.Add(input);
        command.Options.Add(output);
        command.Options.Add(device);
        command.SetAction(result =>
        {
            var clock = Stopwatch.StartNew();
            var target = TorchRuntime.ParseDevice(result.GetValue(device)!);
            string from = result.GetValue(input)!.FullName, to = result.GetValue(output)!.FullName;
            using var trained = PyTorchStateDict.IsPyTorchFile(from)
                ? PyTorchStateDict.Import(from, options.Build(result), ModelForm.Training).to(target)
                : ModelFile.Load(from, target);
            if (trained.Form != ModelForm.Training)
                throw new ArgumentException($"'{from}' already holds a converted model");

            using var converted = Conversion.Convert(trained);
            double difference = FeatureDifference(trained, converted, target);
            ConvertedModelFile.Save(converted, to, new OnnxExportOptions(Dataset: ExplicitDataset(result, options)));

            var console = AnsiConsole.Console;
            var before = ModelCost.Total(trained.Config, ModelForm.Training);
            var after = ModelCost.Total(trained.Config, ModelForm.Converted);
            var table = new Table().AddColumns("", "training form", "converted");
            table.AddRow("parameters", Millions(before.Parameters), Millions(after.Parameters));
            table.AddRow("FLOPs", Millions(before.Flops), Millions(after.Flops));
            console.Write(table);
            console.MarkupLine($"features of the two forms agree to {difference:E1} (relative, random batch of 2)");
            console.MarkupLine($"wrote [bold]{Markup.Escape(to)}[/] in {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        });
        return command;
    }

    static Command Evaluate()
    {
        var options = new ModelOptions(defaultDataset: "fashion-mnist");
        var input = new Option<FileInfo>("--in") { Description = "model: a native .ccm file, or a PyTorch state dict (.pt/.pth, training or converted form, with --arch/--dataset)", Required = true };
        var data = new Option<string?>("--data") { Description = "dataset folder (as for train); the test split is evaluated" };
        var convert = new Option<bool>("--convert") { Description = "also evaluate the converted form of a training-form model" };
        var batch = new Option<int>("--batch-size") { Description = "images per evaluation batch", DefaultValueFactory = _ => 256 };
        var json = new Option<bool>("--json") { Description = "print one JSON object per form instead of a table" };
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var command = new Command("eval", "test-set accuracy (top-1, top-5, loss) and images/s of a saved model, in the form it holds (a converted one runs compiled)");
        foreach (var option in options.All.Concat<Option>([input, data, convert, batch, json, device])) command.Options.Add(option);
        command.SetAction(result =>
        {
            var target = TorchRuntime.ParseDevice(result.GetValue(device)!);
            string from = result.GetValue(input)!.FullName;
            using var model = PyTorchStateDict.IsPyTorchFile(from) ? PyTorchStateDict.Import(from, options.Build(result, result.GetValue(data))).to(target) : ModelFile.Load(from, target);
            bool quiet = result.GetValue(json);
            var (_, test) = Datasets.Open(result.GetValue(options.Dataset)!, result.GetValue(data), message => { if (!quiet) Console.WriteLine(message); }, model.Config.InputSize);
            Datasets.CheckFits(test, model.Config);
            var forms = new List<(string Form, Accuracy Accuracy, double ImagesPerSecond)> { Measure(model) };
            if (result.GetValue(convert) && model.Form == ModelForm.Training)
            {
                using var converted = Conversion.Convert(model);
                forms.Add(Measure(converted));
            }
            if (quiet)
                foreach (var (form, accuracy, rate) in forms)
                    Console.WriteLine(JsonSerializer.Serialize(new { form, accuracy.Top1, accuracy.Top5, accuracy.Loss, accuracy.Samples, imagesPerSecond = rate }));
            else
            {
                // images/s from loading to the last batch, compiling the converted form included
                var table = new Table().AddColumns("form", "test top-1", "test top-5", "test loss", "images/s, end to end");
                foreach (var (form, accuracy, rate) in forms)
                    table.AddRow(form, $"{accuracy.Top1:P2}", $"{accuracy.Top5:P2}", $"{accuracy.Loss:F4}", $"{rate:F0}");
                AnsiConsole.Console.Write(table);
            }
            return 0;

            (string, Accuracy, double) Measure(CondenseNet evaluated)
            {
                var clock = Stopwatch.StartNew();
                var accuracy = Evaluation.Run(evaluated, test, target, result.GetValue(batch), loaderThreads: 2);
                string form = evaluated.Form == ModelForm.Training ? "masked (training form)" : "converted (compiled)";
                return (form, accuracy, accuracy.Samples / clock.Elapsed.TotalSeconds);
            }
        });
        return command;
    }

    static Command Export()
    {
        var options = new ModelOptions();
        var input = new Option<FileInfo>("--in") { Description = "model: a native .ccm file or a PyTorch state dict (.pt/.pth, with --arch/--dataset); a fully condensed training-form model is converted first", Required = true };
        var output = new Option<FileInfo>("--out") { Description = "file to write", Required = true };
        var format = new Option<string>("--format") { Description = "onnx (ONNX graph), pytorch (state dict) or ccm (native)", DefaultValueFactory = _ => "onnx" };
        format.AcceptOnlyFromAmong("onnx", "pytorch", "ccm");
        var opset = new Option<int>("--opset") { Description = $"onnx: ONNX operator set, {OnnxExport.MinOpset} to {OnnxExport.MaxOpset}", DefaultValueFactory = _ => OnnxExport.DefaultOpset };
        var batch = new Option<string>("--batch") { Description = "onnx: 'dynamic' (any batch size at run time) or a fixed batch size", DefaultValueFactory = _ => "dynamic" };
        var command = new Command("export", "write the deployable condensed model as an ONNX graph (or a PyTorch state dict, or native)");
        foreach (var option in options.All.Concat<Option>([input, output, format, opset, batch])) command.Options.Add(option);
        command.SetAction(result =>
        {
            string from = result.GetValue(input)!.FullName, to = result.GetValue(output)!.FullName;
            string extension = result.GetValue(format) switch { "onnx" => ".onnx", "pytorch" => ".pt", _ => ".ccm" };
            if (Path.GetExtension(to) != extension && !(extension == ".pt" && PyTorchStateDict.IsPyTorchFile(to)))
                throw new ArgumentException($"--out '{to}' does not end with {extension}, the extension of --format {result.GetValue(format)}");
            var onnx = new OnnxExportOptions(result.GetValue(opset), OnnxExport.ParseBatch(result.GetValue(batch)!), ExplicitDataset(result, options));
            OnnxExport.CheckOpset(onnx.Opset);
            using var model = PyTorchStateDict.IsPyTorchFile(from) ? PyTorchStateDict.Import(from, options.Build(result)) : ModelFile.Load(from);
            using var converted = model.Form == ModelForm.Converted ? null : Conversion.Convert(model);
            ConvertedModelFile.Save(converted ?? model, to, onnx);
            AnsiConsole.Console.MarkupLine($"wrote [bold]{Markup.Escape(to)}[/] ({new FileInfo(to).Length / 1e6:F2} MB)" +
                (extension == ".onnx" ? $": opset {onnx.Opset}, batch {onnx.Batch?.ToString() ?? "dynamic"}, input '{OnnxExport.InputName}', outputs '{OnnxExport.LogitsName}', '{OnnxExport.FeaturesName}'" : ""));
            return 0;
        });
        return command;
    }

    /// <summary>--dataset when given on the command line; otherwise the ONNX export infers it from the model's shape.</summary>
    static string? ExplicitDataset(ParseResult result, ModelOptions options) =>
        result.GetResult(options.Dataset) is { Implicit: false } ? result.GetValue(options.Dataset) : null;

    /// <summary>Largest feature difference between the two forms on a random batch, relative to the feature scale.</summary>
    static double FeatureDifference(CondenseNet trained, CondenseNet converted, torch.Device device)
    {
        using var scope = torch.NewDisposeScope();
        using var _ = torch.no_grad();
        trained.eval();
        converted.eval();
        var c = trained.Config;
        var x = torch.randn(2, c.InChannels, c.InputSize, c.InputSize, device: device);
        var a = trained.Features(x);
        var b = converted.Features(x);
        return (a - b).abs().max().item<float>() / Math.Max(1e-12, a.abs().max().item<float>());
    }

    public static Table CostTable(IEnumerable<CostRow> rows, CostRow total)
    {
        var table = new Table().AddColumn("block").AddColumn(new TableColumn("parameters").RightAligned()).AddColumn(new TableColumn("FLOPs").RightAligned());
        foreach (var row in rows) table.AddRow(row.Name, row.Parameters.ToString("N0"), row.Flops.ToString("N0"));
        table.AddRow($"[bold]{total.Name}[/]", $"[bold]{total.Parameters:N0} ({Millions(total.Parameters)})[/]", $"[bold]{total.Flops:N0} ({Millions(total.Flops)})[/]");
        return table;
    }

    static string Millions(long value) => $"{value / 1e6:F2}M";
}
