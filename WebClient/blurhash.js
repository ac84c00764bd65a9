// BlurHash (https://blurha.sh) decoding, to paint an attachment's placeholder while its
// thumbnail loads: the hash's DCT components summed per pixel, at a small size the CSS scales.

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

function decode83(text) {
  let value = 0;
  for (const character of text) {
    const digit = DIGITS.indexOf(character);
    if (digit < 0) throw new Error("not a BlurHash");
    value = value * 83 + digit;
  }
  return value;
}

const toLinear = (value) => {
  const v = value / 255;
  return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
};
const toSRGB = (value) => {
  const v = Math.max(0, Math.min(1, value));
  return Math.round(v <= 0.0031308 ? v * 12.92 * 255 + 0.5 : (1.055 * Math.pow(v, 1 / 2.4) - 0.055) * 255 + 0.5);
};
const signedPow = (value, exponent) => Math.sign(value) * Math.pow(Math.abs(value), exponent);

/** RGBA pixels of `width` × `height` for `hash`; throws on a malformed hash. */
export function decode(hash, width, height) {
  if (!hash || hash.length < 6) throw new Error("not a BlurHash");
  const size = decode83(hash[0]);
  const componentsX = (size % 9) + 1;
  const componentsY = Math.floor(size / 9) + 1;
  if (hash.length !== 4 + 2 * componentsX * componentsY) throw new Error("BlurHash length mismatch");
  const maximum = (decode83(hash[1]) + 1) / 166;
  const colors = [];
  const dc = decode83(hash.slice(2, 6));
  colors.push([toLinear(dc >> 16), toLinear((dc >> 8) & 255), toLinear(dc & 255)]);
  for (let i = 1; i < componentsX * componentsY; i++) {
    const value = decode83(hash.slice(4 + i * 2, 6 + i * 2));
    const quant = (v) => signedPow((v - 9) / 9, 2) * maximum;
    colors.push([quant(Math.floor(value / 361)), quant(Math.floor(value / 19) % 19), quant(value % 19)]);
  }
  const pixels = new Uint8ClampedArray(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < componentsY; j++) {
        for (let i = 0; i < componentsX; i++) {
          const basis = Math.cos((Math.PI * x * i) / width) * Math.cos((Math.PI * y * j) / height);
          const color = colors[i + j * componentsX];
          r += color[0] * basis; g += color[1] * basis; b += color[2] * basis;
        }
      }
      const at = 4 * (x + y * width);
      pixels[at] = toSRGB(r); pixels[at + 1] = toSRGB(g); pixels[at + 2] = toSRGB(b); pixels[at + 3] = 255;
    }
  }
  return pixels;
}

/** A canvas with the placeholder painted, or null for a missing or malformed hash. */
export function placeholder(hash) {
  try {
    const canvas = document.createElement("canvas");
    canvas.width = 32; canvas.height = 32;
    canvas.getContext("2d").putImageData(new ImageData(decode(hash, 32, 32), 32, 32), 0, 0);
    canvas.className = "placeholder";
    canvas.setAttribute("aria-hidden", "true");
    return canvas;
  } catch {
    return null;
  }
}
