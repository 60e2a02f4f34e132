namespace CondenseCluster.Shared.Data;

/// <summary>A region of a source image, in source pixels (fractional for the evaluation crop of a resized image).</summary>
public readonly record struct CropBox(double X, double Y, double Width, double Height);

/// <summary>
/// The training and evaluation transforms of the official recipe, as torchvision computes them: where to crop, whether to
/// flip (drawn only from the generator passed in), and the normalising copy into the model's CHW float input.
/// </summary>
public static class ImageTransforms
{
    /// <summary>
    /// Copies <paramref name="source"/> into the <paramref name="size"/>² CHW destination, normalised: source pixel (y, x)
    /// lands at (y + offsetY, x + offsetX), and the result is mirrored left–right when <paramref name="flip"/> is set.
    /// Output pixels that no source pixel lands on are black (raw 0) before normalisation, as torchvision's zero padding
    /// before ToTensor/Normalize gives.
    /// </summary>
    public static void WriteNormalized(ByteImage source, int offsetY, int offsetX, bool flip, Normalization normalization, Span<float> destination, int size)
    {
        int channels = normalization.Channels, planeLength = size * size;
        if (destination.Length != channels * planeLength)
            throw new ArgumentException($"destination holds {destination.Length} floats, a {channels}x{size}x{size} image needs {channels * planeLength}", nameof(destination));

        var pixels = source.Pixels;
        for (int c = 0; c < channels; c++)
        {
            float black = normalization.Apply(c, 0);
            var plane = destination.Slice(c * planeLength, planeLength);
            for (int y = 0; y < size; y++)
            {
                var row = plane.Slice(y * size, size);
                int sourceY = y - offsetY;
                if ((uint)sourceY >= (uint)source.Height)
                {
                    row.Fill(black);
                    continue;
                }
                int rowStart = c * source.ChannelStride + sourceY * source.RowStride;
                for (int x = 0; x < size; x++)
                {
                    int sourceX = (flip ? size - 1 - x : x) - offsetX;
                    row[x] = (uint)sourceX < (uint)source.Width ? normalization.Apply(c, pixels[rowStart + sourceX * source.PixelStride]) : black;
                }
            }
        }
    }

    /// <summary>
    /// RandomCrop(padding) + RandomHorizontalFlip(0.5) of an image as large as the output, drawn as torchvision does: the
    /// crop's top and left in the zero-padded image (0..2·padding), then the flip. Returns where the source lands.
    /// </summary>
    public static (int OffsetY, int OffsetX, bool Flip) RandomCropAndFlip(Random random, int padding)
    {
        int top = random.Next(2 * padding + 1);
        int left = random.Next(2 * padding + 1);
        return (padding - top, padding - left, RandomFlip(random));
    }

    /// <summary>RandomHorizontalFlip with p = 0.5.</summary>
    public static bool RandomFlip(Random random) => random.NextDouble() < 0.5;

    /// <summary>
    /// The crop of torchvision's RandomResizedCrop: up to 10 attempts at an area fraction in [minScale, maxScale] and a
    /// log-uniform aspect ratio in [minRatio, maxRatio] that fits the image, else the central crop with the aspect ratio
    /// clamped to that range.
    /// </summary>
    public static CropBox RandomResizedCrop(Random random, int width, int height,
        double minScale = 0.08, double maxScale = 1, double minRatio = 3.0 / 4, double maxRatio = 4.0 / 3)
    {
        double area = (double)width * height;
        double logMinRatio = Math.Log(minRatio), logMaxRatio = Math.Log(maxRatio);
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double targetArea = area * Uniform(random, minScale, maxScale);
            double aspectRatio = Math.Exp(Uniform(random, logMinRatio, logMaxRatio));
            // Math.Round rounds half to even, as Python's round does.
            int w = (int)Math.Round(Math.Sqrt(targetArea * aspectRatio));
            int h = (int)Math.Round(Math.Sqrt(targetArea / aspectRatio));
            if (w > 0 && w <= width && h > 0 && h <= height)
            {
                int top = random.Next(height - h + 1);
                int left = random.Next(width - w + 1);
                return new CropBox(left, top, w, h);
            }
        }

        double inputRatio = (double)width / height;
        int cropWidth = width, cropHeight = height;
        if (inputRatio < minRatio) cropHeight = (int)Math.Round(width / minRatio);
        else if (inputRatio > maxRatio) cropWidth = (int)Math.Round(height * maxRatio);
        return new CropBox((width - cropWidth) / 2, (height - cropHeight) / 2, cropWidth, cropHeight);
    }

    /// <summary>
    /// Resize(resize) + CenterCrop(crop) as a box in the source image: the shorter side scaled to <paramref name="resize"/>
    /// (the longer one to ⌊resize·long/short⌋), then the central crop² of that, mapped back. Resampling that box straight
    /// to crop² resamples once instead of twice.
    /// </summary>
    public static CropBox ResizeThenCenterCrop(int width, int height, int resize, int crop)
    {
        if (crop > resize) throw new ArgumentException($"the crop ({crop}) must not exceed the resized shorter side ({resize})");
        int resizedWidth, resizedHeight;
        if (width <= height) (resizedWidth, resizedHeight) = (resize, (int)((long)resize * height / width));
        else (resizedWidth, resizedHeight) = ((int)((long)resize * width / height), resize);

        double top = Math.Round((resizedHeight - crop) / 2.0), left = Math.Round((resizedWidth - crop) / 2.0);
        double scaleX = (double)width / resizedWidth, scaleY = (double)height / resizedHeight;
        return new CropBox(left * scaleX, top * scaleY, crop * scaleX, crop * scaleY);
    }

    static double Uniform(Random random, double low, double high) => low + (high - low) * random.NextDouble();
}
