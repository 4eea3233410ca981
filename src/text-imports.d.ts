// Probe templates are imported as text (Bun embeds them in the compiled binary).
declare module "*.bt" {
  const text: string;
  export default text;
}
