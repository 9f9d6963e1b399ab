/** Parquet files for the tests of batch inputs, written with hyparquet-writer as pyarrow (and so Hugging Face datasets) lays them out. */
import { writeFile } from 'node:fs/promises';
import { parquetWriteBuffer, type ColumnSource } from 'hyparquet-writer';

// The writer's own types: it depends on a hyparquet of its own, whose types TypeScript keeps apart from the reader's.
type WriteOptions = Parameters<typeof parquetWriteBuffer>[0];
type SchemaElement = NonNullable<WriteOptions['schema']>[number];

/** A Parquet file written as the given columns, in row groups of `rowGroupSize` rows. */
export async function writeParquet(path: string, columnData: ColumnSource[], options: Pick<WriteOptions, 'schema' | 'rowGroupSize' | 'codec' | 'compressors'> = {}): Promise<string> {
  await writeFile(path, Buffer.from(parquetWriteBuffer({ columnData, ...options })));
  return path;
}

/**
 * A flat schema whose columns are leaves of a Parquet type (`INT64`, `STRING` for UTF-8 text, `BINARY`, `TIMESTAMP_MILLIS`…) or lists of
 * one (`LIST<FLOAT>`, written as pyarrow writes a list: three levels); hyparquet-writer would store a JS array as JSON.
 */
export function schemaOf(columns: Record<string, string>): SchemaElement[] {
  const leaf = (name: string, type: string, repetition: 'OPTIONAL' | 'REQUIRED' = 'OPTIONAL'): SchemaElement =>
    type === 'STRING'
      ? { name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: repetition }
      : type === 'TIMESTAMP_MILLIS'
        ? { name, type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type: repetition }
        : { name, type: (type === 'BINARY' ? 'BYTE_ARRAY' : type) as SchemaElement['type'], repetition_type: repetition };
  return [
    { name: 'root', num_children: Object.keys(columns).length },
    ...Object.entries(columns).flatMap(([name, type]) => {
      const element = /^LIST<(.+)>$/.exec(type)?.[1];
      if (element === undefined) return [leaf(name, type)];
      return [{ name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 }, { name: 'list', repetition_type: 'REPEATED', num_children: 1 }, leaf('element', element, 'REQUIRED')] as SchemaElement[];
    }),
  ];
}

/** Hugging Face's layout of an image dataset: `image` a struct {bytes, path}, `label` an int64. */
export const HF_IMAGE_SCHEMA: SchemaElement[] = [
  { name: 'root', num_children: 2 },
  { name: 'image', repetition_type: 'OPTIONAL', num_children: 2 },
  { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
  { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
  { name: 'label', type: 'INT64', repetition_type: 'OPTIONAL' },
];
